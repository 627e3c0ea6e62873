// The progress engine of redist::mpi_device_communicator (comm/mpi/device.hpp): the state a communicator, its
// views and its requests share, which moves staged transfers in chunks and fails them at a deadline.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // Open MPI's deprecated C++ bindings warn under -Werror; redist uses the C API
#endif
#include <cuda_runtime_api.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "redist/comm/mpi/core.hpp"
#include "redist/comm/mpi/device_core.hpp"
#include "redist/core/cuda/runtime.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"

namespace redist::detail {

// What an mpi_device_communicator, its views and its requests share: the stream, the options, the pinned
// memory and every staged transfer in flight. Any wait() drives all of them (progress()), so transfers of
// different requests never wait on each other. The first failure (a CUDA or MPI error, the deadline)
// abandons every transfer (MPI requests cancelled and freed; pinned memory still in use is never freed) and
// from then on every call is refused with the reason.
class mpi_device_state {
 public:
  using clock = std::chrono::steady_clock;

  mpi_device_state(cudaStream_t stream, const mpi_device_options& options, bool direct)
      : stream_(stream),
        options_(options),
        direct_(direct),
        unit_(std::min(options.staging_bytes, max_count())),
        send_arena_(options.staging_bytes),
        recv_arena_(options.staging_bytes) {}
  mpi_device_state(const mpi_device_state&) = delete;
  mpi_device_state& operator=(const mpi_device_state&) = delete;
  // Copies out of pinned memory that still run are polled to completion (at most the deadline) before the
  // memory is freed.
  ~mpi_device_state() {
    if (!failed_.empty()) return;
    const auto deadline = clock::now() + options_.timeout;
    for (unsigned polls = 0; !chunks_.empty(); ++polls) {
      for (auto it = chunks_.begin(); it != chunks_.end();) {
        if (it->request != MPI_REQUEST_NULL) leak();  // a request never waited for (not by redist)
        const cudaError_t rc = it->event ? cudaEventQuery(it->event->native()) : cudaSuccess;
        if (rc == cudaErrorNotReady) {
          ++it;
          continue;
        }
        if (rc != cudaSuccess) leak();
        it = chunks_.erase(it);
      }
      if (!chunks_.empty() && clock::now() >= deadline) {
        leak();
        return;
      }
      device_poll_pause(polls);
    }
  }

  cudaStream_t stream() const noexcept { return stream_; }
  const mpi_device_options& options() const noexcept { return options_; }
  bool direct() const noexcept { return direct_; }
  std::size_t unit() const noexcept { return unit_; }
  mpi_pinned_arena& send_arena() noexcept { return send_arena_; }
  mpi_pinned_arena& recv_arena() noexcept { return recv_arena_; }

  void check_usable(const char* op) const {
    if (!failed_.empty())
      fail(op, ": the communicator failed earlier and refuses every call (", failed_, ")");
  }

  // Adds a transfer of `job` and starts what it can at once.
  void submit(const char* op, const std::shared_ptr<mpi_device_job>& job, mpi_device_transfer t) {
    check_usable(op);
    t.chunks = t.bytes == 0 ? 1 : (t.bytes - 1) / unit_ + 1;
    t.job = job;
    ++job->open;
    transfers_.push_back(std::move(t));
    guard([&] { progress(op); });
  }

  // Drives every transfer until done() (which may throw) is true; an error, or the deadline
  // (options().timeout from now), fails the communicator and throws.
  template <class Done>
  void drive(const char* op, Done done) {
    const auto deadline = clock::now() + options_.timeout;
    for (unsigned polls = 0;; ++polls) {
      check_usable(op);
      bool finished = false;
      guard([&] {
        progress(op);
        finished = done();
      });
      if (finished) return;
      if (clock::now() >= deadline) {
        fail_state(std::string(op) + ": did not complete within the deadline of " +
                   std::to_string(options_.timeout.count()) +
                   " ms (mpi_device_options::timeout; a peer that never posted its side, a dead peer or a "
                   "stuck kernel earlier on the stream)");
      }
      device_poll_pause(polls);
    }
  }

  // Runs f; a redist::error from it fails the communicator (the transfers in flight are lost) and is
  // rethrown.
  template <class F>
  void guard(F&& f) {
    try {
      f();
    } catch (const error& e) {
      if (failed_.empty()) fail_state(e.what());
      throw;
    }
  }

  // Waits until the work enqueued on the stream so far is done: an event recorded and polled.
  void stream_wait(const char* op) {
    check_usable(op);
    std::optional<cuda_event> event(events_.take(op));
    record(op, *event);
    drive(op, [&] { return device_event_done(op, *event); });
    events_.give(event);
  }

  // n bytes of pinned room in `arena`, once there is some.
  std::size_t take_slot(const char* op, mpi_pinned_arena& arena, std::size_t n) {
    std::size_t slot = mpi_pinned_arena::none;
    drive(op, [&] { return (slot = arena.take(op, n)) != mpi_pinned_arena::none; });
    return slot;
  }

  // Copies n device bytes to pinned memory on the stream and waits until they are there.
  void copy_to_pinned(const char* op, std::byte* pinned, const std::byte* device, std::size_t n) {
    guard([&] {
      device_cuda_check(op, cudaMemcpyAsync(pinned, device, n, cudaMemcpyDeviceToHost, stream_),
                        "cudaMemcpyAsync");
    });
    stream_wait(op);
  }

  // Copies n bytes from arena's slot to device memory on the stream; the slot is given back once the copy
  // is done (polled by later progress).
  void copy_from_pinned(const char* op, std::byte* device, mpi_pinned_arena& arena, std::size_t slot,
                        std::size_t n) {
    guard([&] {
      device_cuda_check(op, cudaMemcpyAsync(device, arena.data(slot), n, cudaMemcpyHostToDevice, stream_),
                        "cudaMemcpyAsync");
      mpi_device_chunk& c = chunks_.emplace_back(mpi_device_chunk{
          nullptr, 0, n, &arena, slot, mpi_chunk_phase::from_pinned, MPI_REQUEST_NULL, {}, {}});
      c.event.emplace(events_.take(op));
      record(op, *c.event);
    });
  }

  // Drives every transfer until the MPI request r completes.
  void complete(const char* op, MPI_Request& r) {
    try {
      drive(op, [&] {
        int flag = 0;
        device_mpi_check(op, MPI_Test(&r, &flag, MPI_STATUS_IGNORE), "MPI_Test");
        return flag != 0;
      });
    } catch (...) {
      if (r != MPI_REQUEST_NULL) {
        static_cast<void>(MPI_Request_free(&r));
        leak();
      }
      throw;
    }
  }

  // Fails the communicator: remembers why, abandons every transfer and throws redist::error(message).
  [[noreturn]] void fail_state(const std::string& message) {
    failed_ = message;
    for (mpi_device_chunk& c : chunks_) {
      if (c.request != MPI_REQUEST_NULL) {
        static_cast<void>(MPI_Cancel(&c.request));
        static_cast<void>(MPI_Request_free(&c.request));
      }
    }
    if (!chunks_.empty()) leak();
    chunks_.clear();
    transfers_.clear();  // their jobs stay open: their requests' wait() is refused with the reason
    throw error(message);
  }

 private:
  // ---- progress: every chunk advanced, then new chunks started, then finished transfers retired ----
  void progress(const char* op) {
    for (auto it = chunks_.begin(); it != chunks_.end();) it = advance(op, it);
    struct key {
      MPI_Comm comm;
      int peer;
      int tag;
      bool send;
      bool operator==(const key&) const = default;
    };
    // Messages of one (comm, peer, tag) must reach MPI in the order they were posted: a transfer starts only
    // once every earlier one of its key is wholly handed to MPI.
    std::vector<key> busy;
    for (mpi_device_transfer& t : transfers_) {
      const key k{t.comm, t.peer, t.tag, t.send};
      if (std::find(busy.begin(), busy.end(), k) == busy.end()) {
        if (t.send)
          start_send(op, t);
        else
          start_recv(op, t);
      }
      if (t.posted < t.chunks) busy.push_back(k);
    }
    for (auto it = transfers_.begin(); it != transfers_.end();) {
      if (it->done < it->chunks) {
        ++it;
        continue;
      }
      --it->job->open;
      it = transfers_.erase(it);
    }
  }

  std::pair<std::size_t, std::size_t> chunk_of(const mpi_device_transfer& t, std::size_t k) const noexcept {
    const std::size_t offset = k * unit_;
    return {offset, std::min(unit_, t.bytes - offset)};
  }

  mpi_device_chunk& add_chunk(mpi_device_transfer& t, std::size_t k, mpi_pinned_arena* arena,
                              std::size_t slot, mpi_chunk_phase phase) {
    const auto [offset, n] = chunk_of(t, k);
    return chunks_.emplace_back(
        mpi_device_chunk{&t, offset, n, arena, slot, phase, MPI_REQUEST_NULL, {}, {}});
  }

  void isend(const char* op, mpi_device_transfer& t, mpi_device_chunk& c, const std::byte* from) {
    c.phase = mpi_chunk_phase::in_mpi;
    ++t.posted;
    device_mpi_check(op,
                     MPI_Isend(from, static_cast<int>(c.bytes), MPI_BYTE, t.peer, t.tag, t.comm, &c.request),
                     "MPI_Isend");
  }

  void start_send(const char* op, mpi_device_transfer& t) {
    if (!t.staged) {
      while (t.posted < t.chunks) {
        mpi_device_chunk& c = add_chunk(t, t.posted, nullptr, 0, mpi_chunk_phase::in_mpi);
        isend(op, t, c, t.from + c.offset);
      }
      return;
    }
    while (t.started < t.chunks) {  // copy ahead while there is pinned room
      const std::size_t slot = send_arena_.take(op, chunk_of(t, t.started).second);
      if (slot == mpi_pinned_arena::none) break;
      mpi_device_chunk& c = add_chunk(t, t.started++, &send_arena_, slot, mpi_chunk_phase::to_pinned);
      t.copying.push_back(&c);
      device_cuda_check(op,
                        cudaMemcpyAsync(send_arena_.data(slot), t.from + c.offset, c.bytes,
                                        cudaMemcpyDeviceToHost, stream_),
                        "cudaMemcpyAsync");
      c.event.emplace(events_.take(op));
      record(op, *c.event);
    }
    while (!t.copying.empty() && device_event_done(op, *t.copying.front()->event)) {  // sent in order
      mpi_device_chunk& c = *t.copying.front();
      t.copying.pop_front();
      events_.give(c.event);
      isend(op, t, c, send_arena_.data(c.slot));
    }
  }

  void start_recv(const char* op, mpi_device_transfer& t) {
    if (!t.staged) {  // host pieces, or an empty message
      while (t.posted < t.chunks)
        irecv_host(op, t, add_chunk(t, t.posted++, nullptr, 0, mpi_chunk_phase::in_mpi));
      return;
    }
    while (t.posted < t.chunks) {
      const std::size_t n = chunk_of(t, t.posted).second;
      const std::size_t slot = recv_arena_.take(op, n);
      if (slot == mpi_pinned_arena::none) return;
      int flag = 0;
      MPI_Message message = MPI_MESSAGE_NULL;
      MPI_Status status;
      const int rc = MPI_Improbe(t.peer, t.tag, t.comm, &flag, &message, &status);
      if (rc != MPI_SUCCESS || flag == 0) recv_arena_.give(slot);
      device_mpi_check(op, rc, "MPI_Improbe");
      if (flag == 0) return;
      mpi_device_chunk& c = add_chunk(t, t.posted++, &recv_arena_, slot, mpi_chunk_phase::in_mpi);
      int got = 0;
      device_mpi_check(op, MPI_Get_count(&status, MPI_BYTE, &got), "MPI_Get_count");
      check_message_size(op, t.peer, t.tag, got,
                         n);  // before receiving: a larger message would overrun the slot
      device_mpi_check(op, MPI_Imrecv(recv_arena_.data(slot), got, MPI_BYTE, &message, &c.request),
                       "MPI_Imrecv");
    }
  }

  std::list<mpi_device_chunk>::iterator advance(const char* op, std::list<mpi_device_chunk>::iterator it) {
    mpi_device_chunk& c = *it;
    if (c.phase == mpi_chunk_phase::to_pinned) return ++it;  // sent by start_send, in order
    if (c.phase == mpi_chunk_phase::from_pinned) {
      if (!device_event_done(op, *c.event)) return ++it;
      events_.give(c.event);
      c.arena->give(c.slot);
      return chunks_.erase(it);
    }
    int flag = 0;
    MPI_Status status;
    device_mpi_check(op, MPI_Test(&c.request, &flag, &status), "MPI_Test");
    if (flag == 0) return ++it;
    mpi_device_transfer& t = *c.transfer;
    ++t.done;
    if (!t.send && c.arena == nullptr) {
      int got = 0;
      device_mpi_check(op, MPI_Get_count(&status, MPI_BYTE, &got), "MPI_Get_count");
      check_message_size(op, t.peer, t.tag, got, c.bytes);
    }
    if (!t.send && c.arena != nullptr && deliver(op, t, c)) {
      c.transfer = nullptr;
      c.phase = mpi_chunk_phase::from_pinned;
      return ++it;
    }
    if (c.arena != nullptr) c.arena->give(c.slot);
    return chunks_.erase(it);
  }

  // Copies a received chunk from pinned memory into its pieces: host pieces by the CPU, device pieces on the
  // stream. Whether copies run on the stream (the pinned slot is then given back once they are done).
  bool deliver(const char* op, const mpi_device_transfer& t, mpi_device_chunk& c) {
    const std::byte* const pinned = c.arena->data(c.slot);
    bool device = false;
    std::size_t start = 0;  // of the piece in the message
    for (const mpi_device_piece& p : t.to) {
      const std::size_t lo = std::max(start, c.offset), hi = std::min(start + p.bytes, c.offset + c.bytes);
      if (lo < hi) {
        std::byte* const to = p.data + (lo - start);
        const std::byte* const from = pinned + (lo - c.offset);
        if (p.device) {
          device_cuda_check(op, cudaMemcpyAsync(to, from, hi - lo, cudaMemcpyHostToDevice, stream_),
                            "cudaMemcpyAsync");
          device = true;
        } else {
          host_space::copy(to, from, hi - lo);
        }
      }
      start += p.bytes;
    }
    if (device) {
      c.event.emplace(events_.take(op));
      record(op, *c.event);
    }
    return device;
  }

  void record(const char* op, cuda_event& e) {
    device_cuda_check(op, cudaEventRecord(e.native(), stream_), "cudaEventRecord");
  }
  void leak() noexcept {
    send_arena_.leak();
    recv_arena_.leak();
  }

  cudaStream_t stream_;
  mpi_device_options options_;
  bool direct_;
  std::size_t unit_;
  mpi_pinned_arena send_arena_;  // declared before the chunks: freed after them
  mpi_pinned_arena recv_arena_;
  mpi_event_pool events_;
  std::list<mpi_device_transfer> transfers_;  // in the order posted
  std::list<mpi_device_chunk> chunks_;
  std::string failed_;  // why the communicator failed; empty while it is usable
};

}  // namespace redist::detail
