// The nonblocking operations of redist::mpi_device_communicator (comm/mpi/device.hpp): mpi_device_request and
// mpi_device_p2p_group, and the copy of a rank's own block that redist::grouped makes on the stream.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <exception>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/comm/mpi/communicator.hpp"
#include "redist/comm/mpi/device_core.hpp"
#include "redist/comm/mpi/device_engine.hpp"
#include "redist/comm/mpi/request.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"

namespace redist {

// A nonblocking operation of an mpi_device_communicator: MPI requests (unstaged) and staged transfers.
// wait() completes them, driving every staged transfer of the communicator meanwhile, and throws
// redist::error on failure or past mpi_device_options::timeout. A staged receive is complete once its last
// copy into device memory is enqueued on the stream: the caller's later work on the stream sees the bytes.
// Destroying a pending request waits for it and ignores errors. Move-only.
class mpi_device_request {
 public:
  mpi_device_request() = default;
  mpi_device_request(mpi_device_request&& other) noexcept { *this = std::move(other); }
  mpi_device_request& operator=(mpi_device_request&& other) noexcept {
    if (this != &other) {
      finish();
      mpi_ = std::move(other.mpi_);
      state_ = std::exchange(other.state_, nullptr);
      job_ = std::exchange(other.job_, nullptr);
      op_ = other.op_;
    }
    return *this;
  }
  mpi_device_request(const mpi_device_request&) = delete;
  mpi_device_request& operator=(const mpi_device_request&) = delete;
  ~mpi_device_request() { finish(); }

  bool pending() const noexcept { return mpi_.pending() || (job_ && job_->open != 0); }

  void wait() {
    std::exception_ptr failure;
    try {
      mpi_.wait();
    } catch (...) {
      failure = std::current_exception();
    }
    if (job_) {
      const std::shared_ptr<detail::mpi_device_job> job = std::exchange(job_, nullptr);
      const std::shared_ptr<detail::mpi_device_state> state = std::exchange(state_, nullptr);
      if (job->open != 0) state->drive(op_, [&] { return job->open == 0; });
    }
    if (failure) std::rethrow_exception(failure);
  }

 private:
  friend class mpi_device_communicator;
  friend class mpi_device_p2p_group;

  mpi_device_request(std::shared_ptr<detail::mpi_device_state> state, const char* op)
      : state_(std::move(state)), job_(std::make_shared<detail::mpi_device_job>()), op_(op) {}

  void finish() noexcept {
    try {
      wait();
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor reports nothing; the failure is recorded
    }
  }

  mpi_request mpi_;
  std::shared_ptr<detail::mpi_device_state> state_;
  std::shared_ptr<detail::mpi_device_job> job_;
  const char* op_ = "";
};

// A group of point-to-point transfers (see p2p_group): send(), recv() and recv_pieces() start them at once
// on the tag of mpi_p2p_group, and finish() hands back the request that completes them all. With a
// CUDA-aware MPI it is an mpi_p2p_group, after one wait for the stream's work before the first device
// buffer; otherwise staged transfers (see mpi_device_communicator). Zero-byte transfers are not posted.
class mpi_device_p2p_group {
 public:
  void send(std::span<const std::byte> buf, int peer) {
    check_peer("send", peer);
    if (buf.empty()) return;
    const bool device = detail::is_device_memory(buf.data());
    if (direct_) {
      if (device) wait_for_stream();
      direct_->send(buf, peer);
      return;
    }
    detail::mpi_device_transfer t;
    t.send = true;
    t.staged = device;
    t.comm = comm_;
    t.peer = peer;
    t.tag = mpi_p2p_group::tag;
    t.bytes = buf.size();
    t.from = buf.data();
    state_->submit(op_, r_.job_, std::move(t));
  }
  void recv(std::span<std::byte> buf, int peer) {
    recv_pieces(std::array{segment{buf.data(), buf.size()}}, peer);
  }
  // One message from `peer` spread over several pieces in order; staged if one of them is device memory.
  void recv_pieces(std::span<const segment> pieces, int peer) {
    check_peer("recv", peer);
    detail::mpi_device_transfer t;
    bool device = false;
    for (const segment& s : pieces) {
      if (s.bytes == 0) continue;
      t.to.push_back({s.data, s.bytes, detail::is_device_memory(s.data)});
      device = device || t.to.back().device;
      t.bytes += s.bytes;
    }
    if (t.bytes == 0) return;
    if (direct_) {
      if (device) wait_for_stream();
      direct_->recv_pieces(pieces, peer);
      return;
    }
    t.staged = device;
    t.comm = comm_;
    t.peer = peer;
    t.tag = mpi_p2p_group::tag;
    state_->submit(op_, r_.job_, std::move(t));
  }

  [[nodiscard]] mpi_device_request finish() && {
    if (direct_) r_.mpi_ = std::move(*direct_).finish();
    return std::move(r_);
  }

 private:
  friend class mpi_device_communicator;

  mpi_device_p2p_group(std::shared_ptr<detail::mpi_device_state> state, const mpi_communicator& host,
                       const char* op)
      : state_(state), comm_(host.native()), size_(host.size()), op_(op), r_(std::move(state), op) {
    state_->check_usable(op);
    if (state_->direct()) direct_.emplace(host.start_group());
  }

  void check_peer(const char* what, int peer) const {
    if (peer < 0 || peer >= size_) {
      detail::fail(op_, ": a group's ", what, " names rank ", peer,
                   ", out of range for a communicator of size ", size_);
    }
  }
  void wait_for_stream() {
    if (!stream_waited_) state_->stream_wait(op_);
    stream_waited_ = true;
  }

  std::shared_ptr<detail::mpi_device_state> state_;
  MPI_Comm comm_;
  int size_;
  const char* op_;
  bool stream_waited_ = false;
  std::optional<mpi_p2p_group> direct_;  // with a CUDA-aware MPI
  mpi_device_request r_;                 // destroyed first: a pending one waits for what was started
};

namespace detail {

// The memory space redist::grouped copies a rank's own block with: cudaMemcpyAsync on the stream where
// device memory is involved, host_space between host buffers. (A copy between pageable host memory and the
// device may block the CPU until the stream reaches it; the library's collectives never mix the two.)
struct mpi_device_copy {
  const char* op;
  cudaStream_t stream;

  void copy(std::byte* to, const std::byte* from, std::size_t n) const {
    if (n == 0) return;
    if (!is_device_memory(to) && !is_device_memory(from)) {
      host_space::copy(to, from, n);
      return;
    }
    device_cuda_check(op, cudaMemcpyAsync(to, from, n, cudaMemcpyDefault, stream), "cudaMemcpyAsync");
  }
};

inline bool any_device(std::initializer_list<const void*> pointers) {
  return std::any_of(pointers.begin(), pointers.end(), [](const void* p) { return is_device_memory(p); });
}

}  // namespace detail

}  // namespace redist
