// The foundations of redist::mpi_device_communicator (comm/mpi/device.hpp): its options, the pinned host
// memory it stages device buffers through, and the transfers and chunks its progress engine moves.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // Open MPI's deprecated C++ bindings warn under -Werror; redist uses the C API
#endif
#include <cuda_runtime_api.h>
#include <mpi.h>
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // Open MPI's CUDA extension: MPIX_CUDA_AWARE_SUPPORT, MPIX_Query_cuda_support
#endif

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "redist/comm/mpi/core.hpp"
#include "redist/core/cuda/runtime.hpp"
#include "redist/core/error.hpp"

namespace redist {

// Whether device pointers go to MPI as they are (a CUDA-aware MPI) or are staged through pinned host memory.
enum class mpi_cuda_aware : std::uint8_t {
  automatic,  // as the MPI library reports: MPIX_Query_cuda_support() == 1 where <mpi-ext.h> declares it
  always,     // device pointers go to MPI (only with an MPI that reads and writes device memory)
  never,      // device buffers are always staged
};

// Options of an mpi_device_communicator, e.g. redist::mpi_device_options{.staging_bytes = 8 << 20}. They
// must be the same on every rank: staged or not, and the staging size, decide how messages are cut.
struct mpi_device_options {
  // The pinned host memory kept per direction (sends, receives) for staging device buffers; a message moves
  // as consecutive MPI messages of at most this many bytes (and at most INT_MAX).
  std::size_t staging_bytes = std::size_t{64} << 20;
  mpi_cuda_aware cuda_aware = mpi_cuda_aware::automatic;
  // The most one blocking step may take (a wait(), a stream wait, a collective); past it the call throws
  // redist::error and the communicator refuses every later call: never a hang.
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
};

namespace detail {

// Whether the MPI library reads and writes device memory. MPI must be initialized.
inline bool mpi_library_cuda_aware() noexcept {
#if defined(MPIX_CUDA_AWARE_SUPPORT)
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

// Whether p is device (or managed) memory, which a CPU and an MPI that is not CUDA-aware cannot use.
inline bool is_device_memory(const void* p) noexcept {
  if (p == nullptr) return false;
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    static_cast<void>(cudaGetLastError());  // an unknown pointer is host memory; clear the error it left
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

// Throws redist::error naming the operation, the CUDA call and CUDA's text unless rc is cudaSuccess.
inline void device_cuda_check(const char* op, cudaError_t rc, const char* call) {
  if (rc != cudaSuccess)
    fail(op, ": ", call, " failed: ", cudaGetErrorName(rc), ": ", cudaGetErrorString(rc));
}

// Throws redist::error naming the operation, the MPI call and MPI's text unless rc is MPI_SUCCESS.
inline void device_mpi_check(const char* op, int rc, const char* call) {
  if (rc == MPI_SUCCESS) [[likely]]
    return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS || length <= 0) length = 0;
  fail(op, ": ", call, " failed: ",
       length > 0 ? std::string(text, static_cast<std::size_t>(length))
                  : "MPI error code " + std::to_string(rc));
}

// Pinned host memory of one direction, allocated (cudaMallocHost) on first use and kept; pieces of it are
// handed out first fit and given back in any order. Freed with the owner, unless something may still use it.
class mpi_pinned_arena {
 public:
  static constexpr std::size_t none = SIZE_MAX;

  explicit mpi_pinned_arena(std::size_t capacity) noexcept : capacity_(capacity) {}
  mpi_pinned_arena(const mpi_pinned_arena&) = delete;
  mpi_pinned_arena& operator=(const mpi_pinned_arena&) = delete;
  ~mpi_pinned_arena() {
    if (base_ != nullptr && !leaked_) static_cast<void>(cudaFreeHost(base_));
  }

  // The offset of n (> 0, at most the capacity) free bytes, or none while there is no room.
  std::size_t take(const char* op, std::size_t n) {
    if (base_ == nullptr) {
      void* p = nullptr;
      device_cuda_check(op, cudaMallocHost(&p, capacity_), "cudaMallocHost");
      base_ = static_cast<std::byte*>(p);
    }
    std::size_t at = 0;
    for (const auto& [start, bytes] : used_) {
      if (start - at >= n) break;
      at = start + bytes;
    }
    if (capacity_ - at < n) return none;
    used_.emplace(at, n);
    return at;
  }
  void give(std::size_t at) noexcept { used_.erase(at); }
  std::byte* data(std::size_t at) const noexcept { return base_ + at; }
  void leak() noexcept { leaked_ = true; }  // MPI or a copy may still use it: never freed

 private:
  std::size_t capacity_;
  std::byte* base_ = nullptr;
  std::map<std::size_t, std::size_t> used_;  // offset -> bytes
  bool leaked_ = false;
};

// The transfers of one request still open; the request is complete when none is.
struct mpi_device_job {
  std::size_t open = 0;
};

struct mpi_device_piece {
  std::byte* data;
  std::size_t bytes;
  bool device;
};

struct mpi_device_chunk;

// One point-to-point message, cut into chunks of unit bytes (one empty chunk for an empty message). A staged
// send copies each chunk to pinned memory on the stream and sends it once the copy is done; a staged receive
// matches each chunk (MPI_Improbe) only once there is pinned room for it, receives it there and copies it
// into place on the stream. Unstaged (host) transfers are posted to MPI at once.
struct mpi_device_transfer {
  bool send = false;
  bool staged = false;
  MPI_Comm comm = MPI_COMM_NULL;
  int peer = 0;
  int tag = 0;
  std::size_t bytes = 0;
  const std::byte* from = nullptr;        // a send's bytes
  std::vector<mpi_device_piece> to;       // a receive's pieces, in order
  std::size_t chunks = 1;                 // counts of chunks:
  std::size_t started = 0;                // copied to pinned memory (staged sends)
  std::size_t posted = 0;                 // handed to MPI
  std::size_t done = 0;                   // complete (a receive's: copied into place, or being copied)
  std::deque<mpi_device_chunk*> copying;  // a staged send's chunks whose copy to pinned memory runs
  std::shared_ptr<mpi_device_job> job;
};

enum class mpi_chunk_phase : std::uint8_t { to_pinned, in_mpi, from_pinned };

struct mpi_device_chunk {
  mpi_device_transfer* transfer;  // null once delivered (the copy out of pinned memory may still run)
  std::size_t offset;
  std::size_t bytes;
  mpi_pinned_arena* arena;  // null: MPI uses the caller's host memory
  std::size_t slot;
  mpi_chunk_phase phase;
  MPI_Request request = MPI_REQUEST_NULL;
  std::optional<cuda_event> event;
  std::unique_ptr<mpi_types> types;  // a receive straight into several host pieces: its datatype
};

// Events of the stream, reused: staging creates none after its first rounds.
class mpi_event_pool {
 public:
  cuda_event take(const char* op) {
    if (!free_.empty()) {
      cuda_event e = std::move(free_.back());
      free_.pop_back();
      return e;
    }
    try {
      return cuda_event();
    } catch (const std::exception& e) {
      fail(op, ": ", e.what());
    }
  }
  void give(std::optional<cuda_event>& e) {
    if (!e) return;
    free_.push_back(std::move(*e));
    e.reset();
  }

 private:
  std::vector<cuda_event> free_;
};

// Whether the work before e was last recorded is done; a CUDA error of that work throws, naming op.
inline bool device_event_done(const char* op, const cuda_event& e) {
  const cudaError_t rc = cudaEventQuery(e.native());
  if (rc == cudaErrorNotReady) return false;
  device_cuda_check(op, rc, "cudaEventQuery");
  return true;
}

inline void device_poll_pause(unsigned polls) noexcept {
  if (polls < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(polls < 1024 ? 20 : 200));
  }
}

// Chunk c of a receive straight into host memory: into one piece as MPI_BYTE, else through a datatype
// over the pieces it covers (distances from the lowest one, as mpi_p2p_group does): no copy.
inline void irecv_host(const char* op, const mpi_device_transfer& t, mpi_device_chunk& c) {
  std::vector<std::pair<std::byte*, std::size_t>> blocks;
  std::size_t start = 0;  // of the piece in the message
  for (const mpi_device_piece& p : t.to) {
    const std::size_t lo = std::max(start, c.offset), hi = std::min(start + p.bytes, c.offset + c.bytes);
    if (lo < hi) blocks.emplace_back(p.data + (lo - start), hi - lo);
    start += p.bytes;
  }
  std::byte* low = blocks.empty() ? nullptr : blocks.front().first;
  int count = static_cast<int>(c.bytes);
  MPI_Datatype type = MPI_BYTE;
  if (blocks.size() > 1) {
    for (const auto& b : blocks) low = std::min(low, b.first, std::less<>{});
    std::vector<int> lengths;
    std::vector<MPI_Aint> displs;
    for (const auto& [at, bytes] : blocks) append_blocks(at - low, bytes, lengths, displs);
    c.types = std::make_unique<mpi_types>();
    type = c.types->hindexed(lengths, displs);
    count = 1;
  }
  device_mpi_check(op, MPI_Irecv(low, count, type, t.peer, t.tag, t.comm, &c.request), "MPI_Irecv");
}

// Throws unless a message from `peer` with `tag` holds `expected` bytes.
inline void check_message_size(const char* op, int peer, int tag, int got, std::size_t expected) {
  if (got < 0 || static_cast<std::size_t>(got) != expected) {
    fail(op, ": a message of ", got, " bytes arrived from rank ", peer, " with tag ", tag, " where ",
         expected, " bytes were expected (do both sides name the same size and the same staging_bytes?)");
  }
}

}  // namespace detail
}  // namespace redist
