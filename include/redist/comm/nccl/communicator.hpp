// redist::nccl_communicator: the NCCL backend over an ncclComm_t and a CUDA stream: every collective as
// grouped point-to-point (NCCL has no v-collectives) or an NCCL collective, polled against a deadline.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/comm/grouped.hpp"
#include "redist/comm/nccl/core.hpp"
#include "redist/comm/nccl/request.hpp"
#include "redist/comm/nccl/staging.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/detail/checked.hpp"

namespace redist {

// A communicator over an ncclComm_t whose every operation is ordered on one CUDA stream; its wait()s poll
// (never cudaStreamSynchronize or cudaDeviceSynchronize) against nccl_options::timeout. Move-only; not
// thread-safe; the stream must outlive it. Every operation is const and throws redist::error on failure.
//
// Memory: device (or managed) buffers go to NCCL as they are. A buffer in host memory, pageable or pinned
// (told apart by cudaPointerGetAttributes), is staged through device scratch the communicator keeps, by way
// of a pinned mirror: read by the CPU when the operation starts, written when its request completes. That
// is what lets the library hand its metadata (allgatherv's result, the agreement's allgather, headers) to
// NCCL; large payloads belong in device memory.
//
// Failure: an NCCL error (returned, or reported by ncclCommGetAsyncError) or the deadline aborts the
// communicator: ncclCommRevoke where the libnccl has it (2.28.7), else ncclCommAbort, which frees the comm,
// also a wrapped one (the error says so). The call throws redist::error naming the operation, NCCL's text
// and the deadline; every later call on it, its views or its pending requests is refused with that reason.
//
// Point to point: NCCL has no tags (the tag is accepted and ignored: a pair's messages match in the order
// posted), and separate isend()/irecv() calls are separate NCCL groups that run one after another on the
// stream: transfers that must progress together (a ring, an exchange) go into one start_group().
class nccl_communicator {
 public:
  using request = nccl_request;

  // Wraps the user's comm and stream: never destroyed here (aborted only on failure, see above). A comm
  // created nonblocking (ncclConfig_t::blocking = 0) lets the deadline cover enqueueing too.
  nccl_communicator(ncclComm_t comm, cudaStream_t stream, nccl_options options = {})
      : nccl_communicator(std::make_shared<detail::nccl_state>(comm, stream, false, options)) {}

  // A new nonblocking comm of host's ranks on `device`, owned (finalized and destroyed with this object),
  // its operations on `stream`. Collective over `host`, a host communicator (mpi_communicator,
  // self_communicator): rank 0 calls ncclGetUniqueId and broadcasts it with host.broadcast();
  // ncclCommInitRankConfig is polled to completion against the deadline (aborted past it).
  template <communicator Host>
  static nccl_communicator create(const Host& host, int device, cudaStream_t stream,
                                  nccl_options options = {}) {
    constexpr const char* who = "redist::nccl_communicator::create";
    const ncclUniqueId id = detail::nccl_shared_unique_id(who, host);
    const ncclComm_t comm = detail::nccl_init_rank(who, host.size(), host.rank(), id, device, options);
    try {
      return nccl_communicator(std::make_shared<detail::nccl_state>(comm, stream, true, options));
    } catch (...) {
      static_cast<void>(ncclCommAbort(comm));
      throw;
    }
  }

  nccl_communicator(nccl_communicator&&) noexcept = default;
  nccl_communicator& operator=(nccl_communicator&&) noexcept = default;
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;

  // The ncclComm_t (a view's is its parent's; null once ncclCommAbort freed it), the stream and the device.
  ncclComm_t native() const noexcept { return state_->comm(); }
  cudaStream_t stream() const noexcept { return state_->stream(); }
  int device() const noexcept { return state_->device(); }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  static int group_rank(std::span<const int> ranks, int comm_rank) noexcept {
    return redist::group_rank(ranks, comm_rank);
  }

  // The sub-communicator of exactly `ranks` (its rank i is ranks[i]), nullptr on a non-member; called by
  // members only and never communicating. It is a view: the same ncclComm_t and stream, with a rank map,
  // its point-to-point sent to the comm's ranks and its collectives all point to point. ncclCommSplit cannot
  // serve: it is collective over every rank of the parent, and the library's steps call group() on their
  // members alone. Cached per rank tuple; lives as long as this object (or the one it is moved into).
  const nccl_communicator* group(std::span<const int> ranks) const {
    if (const auto it = groups_.find(ranks); it != groups_.end()) return it->second.get();
    detail::check_group_ranks("redist::nccl_communicator::group", ranks, size_);
    const int me = redist::group_rank(ranks, rank_);
    if (me < 0) return nullptr;
    std::vector<int> native(ranks.size());
    bool identity = static_cast<int>(ranks.size()) == state_->size();
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      native[i] = native_rank(ranks[i]);
      identity = identity && native[i] == static_cast<int>(i);
    }
    if (identity) native.clear();  // all ranks in order: the whole comm, NCCL collectives included
    auto view = std::unique_ptr<nccl_communicator>(new nccl_communicator(state_, std::move(native), me));
    return groups_.emplace(std::vector<int>(ranks.begin(), ranks.end()), std::move(view)).first->second.get();
  }

  // ---- collectives: every rank calls them, in the same order; each is its nonblocking form + wait() ----
  // buf has the same size everywhere. The whole comm: one ncclBroadcast; a view: root sends to each rank.
  void broadcast(std::span<std::byte> buf, int root) const {
    start_broadcast("redist::nccl_communicator::broadcast", buf, root).wait();
  }

  // Rank p's send lands at recv[displs[p], +counts[p]) on root; recv, counts and displs matter on root only.
  // One group: root receives from every other rank with bytes.
  void gatherv(std::span<const std::byte> send, std::span<std::byte> recv,
               std::span<const std::size_t> counts, std::span<const std::size_t> displs, int root) const {
    constexpr const char* op = "redist::nccl_communicator::gatherv";
    state_->check_usable(op);
    grouped::igatherv(named{*this, op}, send, recv, counts, displs, root, copier(op)).wait();
  }

  // Root's send[displs[p], +counts[p]) lands in rank p's recv, exactly that size; send, counts and displs
  // matter on root only. One group: root sends to every other rank with bytes.
  void scatterv(std::span<const std::byte> send, std::span<const std::size_t> counts,
                std::span<const std::size_t> displs, std::span<std::byte> recv, int root) const {
    constexpr const char* op = "redist::nccl_communicator::scatterv";
    state_->check_usable(op);
    grouped::iscatterv(named{*this, op}, send, counts, displs, recv, root, copier(op)).wait();
  }

  // send[send_displs[p], +send_counts[p]) goes to rank p; what rank p sends lands at recv[recv_displs[p],
  // ...). One group of every nonempty pair.
  void alltoallv(std::span<const std::byte> send, std::span<const std::size_t> send_counts,
                 std::span<const std::size_t> send_displs, std::span<std::byte> recv,
                 std::span<const std::size_t> recv_counts, std::span<const std::size_t> recv_displs) const {
    start_alltoallv("redist::nccl_communicator::alltoallv", send, send_counts, send_displs, recv, recv_counts,
                    recv_displs)
        .wait();
  }

  // alltoallv, started; the memory moved must stay alive and untouched until the request completes.
  [[nodiscard]] nccl_request ialltoallv(std::span<const std::byte> send,
                                        std::span<const std::size_t> send_counts,
                                        std::span<const std::size_t> send_displs, std::span<std::byte> recv,
                                        std::span<const std::size_t> recv_counts,
                                        std::span<const std::size_t> recv_displs) const {
    return start_alltoallv("redist::nccl_communicator::ialltoallv", send, send_counts, send_displs, recv,
                           recv_counts, recv_displs);
  }

  // Equal blocks: send and recv hold size() blocks of `block` bytes; block p goes to (comes from) rank p. On
  // the whole comm one ncclAlltoAll where the libnccl met at run time has it (2.28.3), else one group.
  void alltoall(std::span<const std::byte> send, std::span<std::byte> recv, std::size_t block) const {
    constexpr const char* op = "redist::nccl_communicator::alltoall";
    const auto n = static_cast<std::size_t>(size_);
    std::size_t total = 0;
    if (!detail::checked_mul(block, n, total) || send.size() != total || recv.size() != total) {
      detail::fail(op, ": send has ", send.size(), " and recv ", recv.size(), " bytes, expected ", size_,
                   " blocks of ", block, " bytes");
    }
    state_->check_usable(op);
    if (const detail::nccl_alltoall_fn fn = state_->api().alltoall;
        fn != nullptr && full() && n > 1 && block != 0) {
      detail::nccl_staging staging;
      const std::size_t in = staging.read(send);
      const std::size_t out = staging.write(recv);
      const ncclComm_t comm = native();
      const cudaStream_t s = stream();
      nccl_request::start(state_, op, staging, [&](const detail::nccl_staging& st) {
        return detail::nccl_enqueued{"ncclAlltoAll",
                                     fn(st.read_ptr(in), st.write_ptr(out), block, ncclUint8, comm, s)};
      }).wait();
      return;
    }
    std::vector<std::size_t> counts(n, block), displs(n);
    for (std::size_t p = 0; p < n; ++p) displs[p] = p * block;
    grouped::ialltoallv(named{*this, op}, send, counts, displs, recv, counts, displs, copier(op)).wait();
  }

  // Equal blocks of host memory: every rank's mine, in rank order, into out (size() blocks of mine.size()
  // bytes): the opening of every op. On the whole comm one ncclAllGather, on a view one group.
  void allgather(std::span<const std::byte> mine, std::span<std::byte> out) const {
    constexpr const char* op = "redist::nccl_communicator::allgather";
    const auto n = static_cast<std::size_t>(size_);
    const auto me = static_cast<std::size_t>(rank_);
    state_->check_usable(op);
    if (out.size() != mine.size() * n)
      detail::fail(op, ": ", out.size(), " bytes for ", size_, " blocks of ", mine.size());
    if (full()) {
      detail::nccl_staging staging;
      const std::size_t in = staging.read(mine);
      const std::size_t to = staging.write(out);
      start_collective(op, staging, "ncclAllGather",
                       [&](const detail::nccl_staging& st, ncclComm_t comm, cudaStream_t s) {
                         return ncclAllGather(st.read_ptr(in), st.write_ptr(to), mine.size(), ncclUint8, comm,
                                              s);
                       })
          .wait();
      return;
    }
    nccl_p2p_group g = start_group_for(op);
    for (std::size_t p = 0; p < n; ++p) {
      if (p == me) continue;
      g.send(mine, static_cast<int>(p));
      g.recv(out.subspan(p * mine.size(), mine.size()), static_cast<int>(p));
    }
    std::move(g).finish().wait();
    host_space::copy(out.data() + me * mine.size(), mine.data(), mine.size());
  }

  // Everyone's bytes, in rank order, where every rank knows every rank's size (sizes[p]): one group.
  std::vector<std::byte> allgatherv(std::span<const std::byte> mine,
                                    std::span<const std::uint64_t> sizes) const {
    constexpr const char* op = "redist::nccl_communicator::allgatherv";
    state_->check_usable(op);
    return grouped::allgather_blocks(start_group_for(op), mine, sizes, static_cast<std::size_t>(rank_),
                                     detail::nccl_can_use(mine.data()));
  }

  // ---- point to point: the receiver names the exact size; tags are ignored (see the class comment) ----
  void send(std::span<const std::byte> buf, int dst, int /*tag*/) const {
    start_p2p("redist::nccl_communicator::send", buf, dst).wait();
  }
  void recv(std::span<std::byte> buf, int src, int /*tag*/) const {
    start_p2p("redist::nccl_communicator::recv", buf, src).wait();
  }
  [[nodiscard]] nccl_request isend(std::span<const std::byte> buf, int dst, int /*tag*/) const {
    return start_p2p("redist::nccl_communicator::isend", buf, dst);
  }
  [[nodiscard]] nccl_request irecv(std::span<std::byte> buf, int src, int /*tag*/) const {
    return start_p2p("redist::nccl_communicator::irecv", buf, src);
  }

  // A group of point-to-point transfers (see nccl_p2p_group); not collective: only the peers take part.
  [[nodiscard]] nccl_p2p_group start_group() const {
    return start_group_for("redist::nccl_communicator::group");
  }

  // Collective: every rank starts it in the same order relative to the other collectives.
  [[nodiscard]] nccl_request ibroadcast(std::span<std::byte> buf, int root) const {
    return start_broadcast("redist::nccl_communicator::ibroadcast", buf, root);
  }

 private:
  // What redist::grouped needs of a communicator, with the operation named in its errors.
  struct named {
    using request = nccl_request;
    const nccl_communicator& comm;
    const char* op;
    int rank() const noexcept { return comm.rank(); }
    int size() const noexcept { return comm.size(); }
    nccl_p2p_group start_group() const { return comm.start_group_for(op); }
  };

  explicit nccl_communicator(std::shared_ptr<detail::nccl_state> state)
      : state_(std::move(state)), rank_(state_->rank()), size_(state_->size()) {}
  nccl_communicator(std::shared_ptr<detail::nccl_state> state, std::vector<int> ranks, int rank)
      : state_(std::move(state)),
        ranks_(std::move(ranks)),
        rank_(rank),
        size_(static_cast<int>(ranks_.size())) {
    if (ranks_.empty()) size_ = state_->size();
  }

  bool full() const noexcept { return ranks_.empty(); }
  int native_rank(int r) const noexcept { return full() ? r : ranks_[static_cast<std::size_t>(r)]; }
  detail::nccl_stream_copy copier(const char* op) const { return {op, stream(), device()}; }
  nccl_p2p_group start_group_for(const char* op) const { return nccl_p2p_group(state_, ranks_, size_, op); }

  // One NCCL collective on the whole comm: enqueue(staging, comm, stream) makes the call named `call`.
  template <class Enqueue>
  nccl_request start_collective(const char* op, detail::nccl_staging& staging, const char* call,
                                Enqueue enqueue) const {
    const ncclComm_t comm = native();
    const cudaStream_t s = stream();
    return nccl_request::start(state_, op, staging, [&](const detail::nccl_staging& st) {
      return detail::nccl_enqueued{call, enqueue(st, comm, s)};
    });
  }

  nccl_request start_alltoallv(const char* op, std::span<const std::byte> send,
                               std::span<const std::size_t> send_counts,
                               std::span<const std::size_t> send_displs, std::span<std::byte> recv,
                               std::span<const std::size_t> recv_counts,
                               std::span<const std::size_t> recv_displs) const {
    state_->check_usable(op);
    return grouped::ialltoallv(named{*this, op}, send, send_counts, send_displs, recv, recv_counts,
                               recv_displs, copier(op));
  }

  nccl_request start_broadcast(const char* op, std::span<std::byte> buf, int root) const {
    if (root < 0 || root >= size_)
      detail::fail(op, ": root ", root, " is out of range for a communicator of size ", size_);
    state_->check_usable(op);
    if (!full()) {
      std::vector<int> everyone(static_cast<std::size_t>(size_));
      std::iota(everyone.begin(), everyone.end(), 0);
      return grouped::ibroadcast(named{*this, op}, buf, root, everyone);
    }
    detail::nccl_staging staging;
    // Root broadcasts in place from what it reads (staged or not); the others receive into what they write.
    const bool sends = rank_ == root;
    const std::size_t handle = sends ? staging.read(buf) : staging.write(buf);
    return start_collective(
        op, staging, "ncclBroadcast", [&](const detail::nccl_staging& st, ncclComm_t comm, cudaStream_t s) {
          if (buf.empty()) return ncclSuccess;  // the same size everywhere: every rank skips it
          void* at = sends ? const_cast<void*>(st.read_ptr(handle)) : st.write_ptr(handle);
          return ncclBroadcast(at, at, buf.size(), ncclUint8, root, comm, s);
        });
  }

  // One transfer, a group of its own: a send from const memory, else a receive.
  template <class Byte>
  nccl_request start_p2p(const char* op, std::span<Byte> buf, int peer) const {
    nccl_p2p_group g = start_group_for(op);
    if constexpr (std::is_const_v<Byte>)
      g.send(buf, peer);
    else
      g.recv(buf, peer);
    return std::move(g).finish();
  }

  std::shared_ptr<detail::nccl_state> state_;
  std::vector<int> ranks_;  // a view's: its rank i is the comm's rank ranks_[i]; empty for the whole comm
  int rank_ = 0;
  int size_ = 0;
  mutable std::map<std::vector<int>, std::unique_ptr<nccl_communicator>, detail::rank_tuple_less> groups_;
};

static_assert(communicator<nccl_communicator>);

}  // namespace redist
