// The NCCL backend's nonblocking operations: nccl_request (an event on the stream, polled together with
// NCCL's asynchronous errors against the deadline) and nccl_p2p_group (transfers enqueued as one NCCL group).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/comm/nccl/core.hpp"
#include "redist/comm/nccl/staging.hpp"
#include "redist/core/cuda/runtime.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"

namespace redist {
namespace detail {

// What an operation's enqueue step reports: the NCCL call that failed (or the last one made) and its result.
struct nccl_enqueued {
  const char* call;
  ncclResult_t rc;
};

}  // namespace detail

// A nonblocking operation of an nccl_communicator: an event recorded on the stream after its NCCL calls (and
// the copies out of scratch), plus the CPU copies into host buffers left for completion. Move-only. wait()
// polls the event and ncclCommGetAsyncError, never synchronizing a stream or the device; an NCCL error, a
// CUDA error of the work or the deadline (nccl_options::timeout from the start of wait()) aborts the
// communicator and throws redist::error naming the operation. Destroying a pending request waits for it and
// ignores errors (destructors never throw): NCCL never writes into memory its owner believes free.
class nccl_request {
 public:
  nccl_request() = default;
  nccl_request(nccl_request&& other) noexcept { *this = std::move(other); }
  nccl_request& operator=(nccl_request&& other) noexcept {
    if (this != &other) {
      finish();
      state_ = std::exchange(other.state_, nullptr);
      op_ = other.op_;
      event_ = std::exchange(other.event_, std::nullopt);
      lease_ = std::exchange(other.lease_, nullptr);
      copies_ = std::exchange(other.copies_, {});
    }
    return *this;
  }
  nccl_request(const nccl_request&) = delete;
  nccl_request& operator=(const nccl_request&) = delete;
  ~nccl_request() { finish(); }

  bool pending() const noexcept { return state_ != nullptr; }

  void wait() {
    if (state_ == nullptr) return;
    const std::shared_ptr<detail::nccl_state> state = std::exchange(state_, nullptr);
    const std::shared_ptr<detail::nccl_scratch> lease = std::exchange(lease_, nullptr);  // until done
    const std::vector<detail::nccl_host_copy> copies = std::exchange(copies_, {});
    state->poll(op_, [this] { return event_->done(); });
    event_.reset();
    for (const detail::nccl_host_copy& c : copies) host_space::copy(c.to, c.from, c.bytes);
  }

 private:
  friend class nccl_communicator;
  friend class nccl_p2p_group;

  // Starts an operation of `op` on the state's stream: stages what NCCL reads, enqueue(staging) makes the
  // NCCL calls (ncclInProgress from a nonblocking comm is polled until enqueued), then the copies out of
  // scratch and the event. A failure before anything is enqueued throws and leaves the communicator usable;
  // one from NCCL, or after it, aborts it.
  template <class Enqueue>
  static nccl_request start(const std::shared_ptr<detail::nccl_state>& state, const char* op,
                            detail::nccl_staging& staging, Enqueue enqueue) {
    detail::nccl_state& s = *state;
    s.check_usable(op);
    const detail::cuda_device_guard guard(op, s.device());
    staging.stage_in(op, s.scratch(), s.stream());
    nccl_request r;
    try {
      r.event_.emplace();
    } catch (const std::exception& e) {
      detail::fail(op, ": ", e.what());
    }
    const detail::nccl_enqueued done = enqueue(static_cast<const detail::nccl_staging&>(staging));
    s.check_call(op, done.call, done.rc);
    const char* call = "cudaMemcpyAsync";
    cudaError_t rc = staging.stage_out(s.stream(), r.copies_);
    if (rc == cudaSuccess) {
      call = "cudaEventRecord";
      rc = cudaEventRecord(r.event_->native(), s.stream());
    }
    if (rc != cudaSuccess) {
      s.fail_aborting(op, std::string(call) + " failed after the NCCL calls were enqueued: " +
                              cudaGetErrorName(rc) + ": " + cudaGetErrorString(rc));
    }
    r.state_ = state;
    r.op_ = op;
    r.lease_ = std::move(staging).lease();
    return r;
  }

  void finish() noexcept {
    if (state_ == nullptr) return;
    try {
      wait();
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor reports nothing; wait() aborted the comm
    }
  }

  std::shared_ptr<detail::nccl_state> state_;  // null once complete
  const char* op_ = "";
  std::optional<detail::cuda_event> event_;
  std::shared_ptr<detail::nccl_scratch> lease_;  // the scratch staged buffers use, held until complete
  std::vector<detail::nccl_host_copy> copies_;   // pinned mirror -> host memory, once complete
};

// A group of point-to-point transfers, the shape NCCL offers: send(), recv() and recv_pieces() record them
// (peers are ranks of the communicator that started the group; zero-byte transfers are skipped) and
// finish() enqueues them all between ncclGroupStart and ncclGroupEnd, as ncclUint8 (NCCL has no bool or
// int16), host buffers staged. Between two ranks transfers match in the order they were posted; each side
// names the exact size. Nothing reaches NCCL before finish(), so an exception between the calls leaves no
// group open; a group destroyed unfinished does nothing.
class nccl_p2p_group {
 public:
  void send(std::span<const std::byte> buf, int peer) {
    const int to = native_peer("send", peer);
    if (!buf.empty()) transfers_.push_back({true, to, buf.size(), staging_.read(buf)});
  }
  void recv(std::span<std::byte> buf, int peer) {
    recv_pieces(std::array{segment{buf.data(), buf.size()}}, peer);
  }
  // One message from `peer` spread over several pieces in order: received into scratch, then copied into
  // place (one cudaMemcpyAsync per device piece; NCCL writes a single device piece directly).
  void recv_pieces(std::span<const segment> pieces, int peer) {
    const int from = native_peer("recv", peer);
    const std::size_t bytes = detail::total_bytes(pieces);
    if (bytes != 0) transfers_.push_back({false, from, bytes, staging_.write(pieces)});
  }

  [[nodiscard]] nccl_request finish() && {
    return nccl_request::start(state_, op_, staging_, [this](const detail::nccl_staging& st) {
      detail::nccl_enqueued done{"ncclGroupStart", ncclSuccess};
      if (transfers_.empty()) return done;
      const ncclComm_t comm = state_->comm();
      const cudaStream_t stream = state_->stream();
      done.rc = ncclGroupStart();
      if (done.rc != ncclSuccess) return done;
      for (const transfer& t : transfers_) {
        const ncclResult_t rc =
            t.send ? ncclSend(st.read_ptr(t.handle), t.bytes, ncclUint8, t.peer, comm, stream)
                   : ncclRecv(st.write_ptr(t.handle), t.bytes, ncclUint8, t.peer, comm, stream);
        if (rc != ncclSuccess && rc != ncclInProgress) {
          done = {t.send ? "ncclSend" : "ncclRecv", rc};
          break;
        }
      }
      const ncclResult_t end = ncclGroupEnd();  // closes the group also after a failed call
      if (done.rc == ncclSuccess) done = {"ncclGroupEnd", end};
      return done;
    });
  }

 private:
  friend class nccl_communicator;

  // ranks: the communicator's rank i is the comm's rank ranks[i] (a view); empty for the whole comm.
  nccl_p2p_group(std::shared_ptr<detail::nccl_state> state, std::span<const int> ranks, int size,
                 const char* op)
      : state_(std::move(state)), ranks_(ranks), size_(size), op_(op) {}

  int native_peer(const char* what, int peer) const {
    if (peer < 0 || peer >= size_) {
      detail::fail(op_, ": a group's ", what, " names rank ", peer,
                   ", out of range for a communicator of size ", size_);
    }
    return ranks_.empty() ? peer : ranks_[static_cast<std::size_t>(peer)];
  }

  struct transfer {
    bool send;
    int peer;  // a rank of the ncclComm_t
    std::size_t bytes;
    std::size_t handle;  // in staging_
  };

  std::shared_ptr<detail::nccl_state> state_;
  std::span<const int> ranks_;
  int size_;
  const char* op_;
  detail::nccl_staging staging_;
  std::vector<transfer> transfers_;
};

}  // namespace redist
