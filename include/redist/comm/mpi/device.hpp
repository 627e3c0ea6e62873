// redist::mpi_device_communicator: MPI with host or device (CUDA) buffers, over an mpi_communicator and a
// CUDA stream. Not included by redist/comm/mpi.hpp (it needs the CUDA runtime): include this header itself.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
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
#include "redist/comm/mpi/communicator.hpp"
#include "redist/comm/mpi/device_core.hpp"
#include "redist/comm/mpi/device_engine.hpp"
#include "redist/comm/mpi/device_request.hpp"
#include "redist/core/error.hpp"

namespace redist {

// A communicator over an mpi_communicator (not owned: it must outlive this object, its views and its
// requests) whose buffers may be host or device memory (told apart by cudaPointerGetAttributes; managed
// memory counts as device), every device access ordered on one CUDA stream, which is never synchronized:
// completion is polled (cudaEventQuery, MPI_Test) against mpi_device_options::timeout. So several MPI ranks
// sharing one GPU, which NCCL refuses, run every operation on device tensors. Move-only; not thread-safe.
//
// Host buffers go to MPI as they are. Device buffers:
// - CUDA-aware MPI (MPIX_Query_cuda_support() == 1, or cuda_aware = always): one event recorded on the stream
//   and polled until the work enqueued before the call is done, then the device pointers go to MPI; every
//   operation is then the wrapped mpi_communicator's.
// - Otherwise staged through pinned host memory: a send is copied to it on the stream (cudaMemcpyAsync) and
//   sent once an event says the copy is done; a receive lands in it and is copied to the device on the
//   stream, so the caller's next kernels see it. Messages move as consecutive MPI messages of at most
//   staging_bytes bytes (host ones too, so that a host buffer meets a device buffer), and the pinned memory
//   held is at most staging_bytes for sends plus staging_bytes for receives: allocated once, on first use
//   (cudaMallocHost, one per direction), kept and never grown, shared by the views. A receive takes pinned
//   room only for a message that has arrived (MPI_Improbe), so receives never block each other; a staged
//   send holds its room until its receiver posts the receive.
//
// Collectives, staged: broadcast in rounds of staging_bytes (one MPI_Ibcast each, the same on every rank
// whatever its memory); gatherv, scatterv, alltoall(v) as redist::grouped over start_group(), so each
// transfer is staged on its own within the budget whatever the total (staging whole buffers would need
// pinned memory of the largest call) and the own block is one cudaMemcpyAsync on the stream; allgather (and
// the sizes redist::allgatherv exchanges) on host values, by nonblocking MPI driven with the staged transfers
// in flight.
class mpi_device_communicator {
 public:
  using request = mpi_device_request;

  // MPI must be initialized; the options must be the same on every rank. Communicates nothing.
  mpi_device_communicator(const mpi_communicator& host, cudaStream_t stream, mpi_device_options options = {})
      : host_(&host), state_(make_state(stream, options)) {}
  mpi_device_communicator(mpi_device_communicator&&) noexcept = default;
  mpi_device_communicator& operator=(mpi_device_communicator&&) noexcept = default;
  mpi_device_communicator(const mpi_device_communicator&) = delete;
  mpi_device_communicator& operator=(const mpi_device_communicator&) = delete;

  MPI_Comm native() const noexcept { return host_->native(); }
  const mpi_communicator& host() const noexcept { return *host_; }
  cudaStream_t stream() const noexcept { return state_->stream(); }
  const mpi_device_options& options() const noexcept { return state_->options(); }
  // Whether device pointers go to MPI as they are.
  bool cuda_aware() const noexcept { return state_->direct(); }
  int rank() const noexcept { return host_->rank(); }
  int size() const noexcept { return host_->size(); }
  static int group_rank(std::span<const int> ranks, int comm_rank) noexcept {
    return redist::group_rank(ranks, comm_rank);
  }

  // The sub-communicator of exactly `ranks` (its rank i is ranks[i]), nullptr on a non-member: a view over
  // the wrapped communicator's group() (collective over the members the first time, as that one is), with
  // the same stream and pinned memory. Cached; lives as long as this object.
  const mpi_device_communicator* group(std::span<const int> ranks) const {
    if (const auto it = groups_.find(ranks); it != groups_.end()) return it->second.get();
    const mpi_communicator* sub = host_->group(ranks);
    if (sub == nullptr) return nullptr;
    auto view = std::unique_ptr<mpi_device_communicator>(new mpi_device_communicator(*sub, state_));
    return groups_.emplace(std::vector<int>(ranks.begin(), ranks.end()), std::move(view)).first->second.get();
  }

  // ---- collectives: every rank calls them, in the same order ----
  // buf has the same size everywhere.
  void broadcast(std::span<std::byte> buf, int root) const {
    constexpr const char* op = "redist::mpi_device_communicator::broadcast";
    check_root(op, root);
    if (direct(op, {buf.data()})) return host_->broadcast(buf, root);
    detail::mpi_device_state& s = *state_;
    const bool device = detail::is_device_memory(buf.data());
    const bool sends = rank() == root;
    detail::mpi_pinned_arena& arena = sends ? s.send_arena() : s.recv_arena();
    for (std::size_t offset = 0; offset < buf.size(); offset += s.unit()) {
      const std::size_t n = std::min(s.unit(), buf.size() - offset);
      std::byte* const at = buf.data() + offset;
      const std::size_t slot = device ? s.take_slot(op, arena, n) : detail::mpi_pinned_arena::none;
      std::byte* const moved = device ? arena.data(slot) : at;
      if (device && sends) s.copy_to_pinned(op, moved, at, n);
      MPI_Request r = MPI_REQUEST_NULL;
      s.guard([&] {
        detail::device_mpi_check(op, MPI_Ibcast(moved, static_cast<int>(n), MPI_BYTE, root, native(), &r),
                                 "MPI_Ibcast");
      });
      s.complete(op, r);
      if (device && !sends) {
        s.copy_from_pinned(op, at, arena, slot, n);
      } else if (device) {
        arena.give(slot);
      }
    }
  }

  // Rank p's send lands at recv[displs[p], +counts[p]) on root; recv, counts and displs matter on root only.
  void gatherv(std::span<const std::byte> send, std::span<std::byte> recv,
               std::span<const std::size_t> counts, std::span<const std::size_t> displs, int root) const {
    constexpr const char* op = "redist::mpi_device_communicator::gatherv";
    if (direct(op, {send.data(), recv.data()})) return host_->gatherv(send, recv, counts, displs, root);
    grouped::igatherv(named{*this, op}, send, recv, counts, displs, root, copier(op)).wait();
  }

  // Root's send[displs[p], +counts[p]) lands in rank p's recv, exactly that size; send, counts and displs
  // matter on root only.
  void scatterv(std::span<const std::byte> send, std::span<const std::size_t> counts,
                std::span<const std::size_t> displs, std::span<std::byte> recv, int root) const {
    constexpr const char* op = "redist::mpi_device_communicator::scatterv";
    if (direct(op, {send.data(), recv.data()})) return host_->scatterv(send, counts, displs, recv, root);
    grouped::iscatterv(named{*this, op}, send, counts, displs, recv, root, copier(op)).wait();
  }

  // send[send_displs[p], +send_counts[p]) goes to rank p; what rank p sends lands at recv[recv_displs[p],
  // ...).
  void alltoallv(std::span<const std::byte> send, std::span<const std::size_t> send_counts,
                 std::span<const std::size_t> send_displs, std::span<std::byte> recv,
                 std::span<const std::size_t> recv_counts, std::span<const std::size_t> recv_displs) const {
    constexpr const char* op = "redist::mpi_device_communicator::alltoallv";
    if (direct(op, {send.data(), recv.data()}))
      return host_->alltoallv(send, send_counts, send_displs, recv, recv_counts, recv_displs);
    grouped::alltoallv(named{*this, op}, send, send_counts, send_displs, recv, recv_counts, recv_displs,
                       copier(op));
  }

  // Equal blocks: send and recv hold size() blocks of `block` bytes; block p goes to (comes from) rank p.
  void alltoall(std::span<const std::byte> send, std::span<std::byte> recv, std::size_t block) const {
    constexpr const char* op = "redist::mpi_device_communicator::alltoall";
    const auto n = static_cast<std::size_t>(size());
    if (send.size() / n != block || send.size() % n != 0 || recv.size() != send.size()) {
      detail::fail(op, ": send has ", send.size(), " and recv ", recv.size(), " bytes, expected ", n,
                   " blocks of ", block, " bytes");
    }
    if (direct(op, {send.data(), recv.data()})) return host_->alltoall(send, recv, block);
    std::vector<std::size_t> counts(n, block), displs(n);
    for (std::size_t p = 0; p < n; ++p) displs[p] = p * block;
    grouped::alltoallv(named{*this, op}, send, counts, displs, recv, counts, displs, copier(op));
  }

  // Equal blocks of host memory: every rank's mine, in rank order, into out (size() blocks of mine.size()
  // bytes). One MPI_Iallgather, driven with the staged transfers in flight: the opening of every op.
  void allgather(std::span<const std::byte> mine, std::span<std::byte> out) const {
    constexpr const char* op = "redist::mpi_device_communicator::allgather";
    if (direct(op, {mine.data(), out.data()})) return host_->allgather(mine, out);
    if (out.size() != mine.size() * static_cast<std::size_t>(size()) || mine.size() > detail::max_count() ||
        detail::any_device({mine.data(), out.data()}))
      detail::fail(op, ": ", out.size(), " bytes of host memory for ", size(), " blocks of ", mine.size());
    const int count = static_cast<int>(mine.size());
    nonblocking(op, "MPI_Iallgather", [&](MPI_Request* r) {
      return MPI_Iallgather(mine.data(), count, MPI_BYTE, out.data(), count, MPI_BYTE, native(), r);
    });
  }

  // Everyone's bytes, in rank order, in host memory, where every rank knows every rank's size (sizes[p]):
  // one group (mine may be device memory: staged like any send).
  std::vector<std::byte> allgatherv(std::span<const std::byte> mine,
                                    std::span<const std::uint64_t> sizes) const {
    constexpr const char* op = "redist::mpi_device_communicator::allgatherv";
    if (direct(op, {mine.data()})) return host_->allgatherv(mine, sizes);
    return grouped::allgather_blocks(start_group_for(op), mine, sizes, static_cast<std::size_t>(rank()),
                                     detail::is_device_memory(mine.data()));
  }

  // ---- point to point: the receiver names the exact size ----
  void send(std::span<const std::byte> buf, int dst, int tag) const {
    start_p2p("redist::mpi_device_communicator::send", buf, dst, tag).wait();
  }
  void recv(std::span<std::byte> buf, int src, int tag) const {
    start_p2p("redist::mpi_device_communicator::recv", buf, src, tag).wait();
  }
  // The buffer must stay alive and untouched until the request completes.
  [[nodiscard]] mpi_device_request isend(std::span<const std::byte> buf, int dst, int tag) const {
    return start_p2p("redist::mpi_device_communicator::isend", buf, dst, tag);
  }
  [[nodiscard]] mpi_device_request irecv(std::span<std::byte> buf, int src, int tag) const {
    return start_p2p("redist::mpi_device_communicator::irecv", buf, src, tag);
  }

  // A group of point-to-point transfers (see mpi_device_p2p_group); not collective: only the peers take part.
  [[nodiscard]] mpi_device_p2p_group start_group() const {
    return start_group_for("redist::mpi_device_communicator::group");
  }

  // Collective: every rank starts it in the same order relative to the other collectives. Staged: root
  // sends to every other rank in one group (rounds of MPI_Ibcast would have to be started in order with
  // the other collectives while the request is pending).
  [[nodiscard]] mpi_device_request ibroadcast(std::span<std::byte> buf, int root) const {
    constexpr const char* op = "redist::mpi_device_communicator::ibroadcast";
    check_root(op, root);
    if (direct(op, {buf.data()})) {
      mpi_device_request r;
      r.mpi_ = host_->ibroadcast(buf, root);
      return r;
    }
    std::vector<int> everyone(static_cast<std::size_t>(size()));
    std::iota(everyone.begin(), everyone.end(), 0);
    return grouped::ibroadcast(named{*this, op}, buf, root, everyone);
  }

 private:
  // What redist::grouped needs of a communicator, with the operation named in its errors.
  struct named {
    using request = mpi_device_request;
    const mpi_device_communicator& comm;
    const char* op;
    int rank() const noexcept { return comm.rank(); }
    int size() const noexcept { return comm.size(); }
    mpi_device_p2p_group start_group() const { return comm.start_group_for(op); }
  };

  mpi_device_communicator(const mpi_communicator& host, std::shared_ptr<detail::mpi_device_state> state)
      : host_(&host), state_(std::move(state)) {}

  static std::shared_ptr<detail::mpi_device_state> make_state(cudaStream_t stream,
                                                              const mpi_device_options& options) {
    constexpr const char* who = "redist::mpi_device_communicator";
    if (options.staging_bytes == 0) detail::fail(who, ": mpi_device_options::staging_bytes must not be 0");
    if (options.timeout.count() < 0) detail::fail(who, ": mpi_device_options::timeout must not be negative");
    const bool direct = options.cuda_aware == mpi_cuda_aware::always ||
                        (options.cuda_aware == mpi_cuda_aware::automatic && detail::mpi_library_cuda_aware());
    return std::make_shared<detail::mpi_device_state>(stream, options, direct);
  }

  // Whether the operation goes to the wrapped communicator as it is (a CUDA-aware MPI), after the stream's
  // work so far is done when one of `buffers` is device memory. Throws once the communicator has failed.
  bool direct(const char* op, std::initializer_list<const void*> buffers) const {
    state_->check_usable(op);
    if (!state_->direct()) return false;
    if (detail::any_device(buffers)) state_->stream_wait(op);
    return true;
  }

  void check_root(const char* op, int root) const {
    if (root < 0 || root >= size())
      detail::fail(op, ": root ", root, " is out of range for a communicator of size ", size());
  }

  // A nonblocking MPI call (start(&request) returns its code), completed while staged transfers progress.
  template <class Start>
  void nonblocking(const char* op, const char* call, Start start) const {
    MPI_Request r = MPI_REQUEST_NULL;
    state_->guard([&] { detail::device_mpi_check(op, start(&r), call); });
    state_->complete(op, r);
  }

  detail::mpi_device_copy copier(const char* op) const { return {op, stream()}; }
  mpi_device_p2p_group start_group_for(const char* op) const { return {state_, *host_, op}; }

  // One message, sent (const bytes) or received. Chunked like a group's transfers, on the caller's tag.
  template <class Byte>
  mpi_device_request start_p2p(const char* op, std::span<Byte> buf, int peer, int tag) const {
    constexpr bool sends = std::is_const_v<Byte>;
    if (peer < 0 || peer >= size())
      detail::fail(op, ": rank ", peer, " is out of range for a communicator of size ", size());
    mpi_device_request r(state_, op);
    if (direct(op, {buf.data()})) {
      if constexpr (sends)
        r.mpi_ = host_->isend(buf, peer, tag);
      else
        r.mpi_ = host_->irecv(buf, peer, tag);
      return r;
    }
    detail::mpi_device_transfer t;
    t.send = sends;
    t.staged = !buf.empty() && detail::is_device_memory(buf.data());
    t.comm = native();
    t.peer = peer;
    t.tag = tag;
    t.bytes = buf.size();
    if constexpr (sends)
      t.from = buf.data();
    else if (!buf.empty())
      t.to.push_back({buf.data(), buf.size(), t.staged});
    state_->submit(op, r.job_, std::move(t));
    return r;
  }

  const mpi_communicator* host_;
  std::shared_ptr<detail::mpi_device_state> state_;
  mutable std::map<std::vector<int>, std::unique_ptr<mpi_device_communicator>, detail::rank_tuple_less>
      groups_;
};

static_assert(communicator<mpi_device_communicator>);

}  // namespace redist
