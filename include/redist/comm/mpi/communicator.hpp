// redist::mpi_communicator: the MPI backend, working on its own duplicate of a user's MPI_Comm: byte-based
// collectives, point to point and nonblocking operations of any size (beyond INT_MAX), cached sub-groups.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // Open MPI's deprecated C++ bindings warn under -Werror; redist uses the C API
#endif
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <numeric>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/comm/mpi/core.hpp"
#include "redist/comm/mpi/request.hpp"
#include "redist/core/error.hpp"
#include "redist/detail/checked.hpp"
#include "redist/detail/hash.hpp"

namespace redist {

// A communicator over a duplicate of the user's MPI_Comm (MPI_Comm_dup), so redist's messages never match the
// user's; errors on it return (MPI_ERRORS_RETURN) and become redist::error. The user's communicator is never
// changed or freed; the duplicate and the cached sub-groups are freed with this object. Move-only.
// Not thread-safe, like an MPI communicator: group() fills a cache, and collectives must be called in the
// same order on every rank. Every operation is const and throws redist::error on failure.
class mpi_communicator {
 public:
  using request = mpi_request;

  // Collective over `user`. MPI must be initialized (redist never initializes or finalizes it).
  explicit mpi_communicator(MPI_Comm user) : mpi_communicator(adopt{}, duplicate(user)) {}
  mpi_communicator(mpi_communicator&&) noexcept = default;
  mpi_communicator& operator=(mpi_communicator&&) noexcept = default;
  mpi_communicator(const mpi_communicator&) = delete;
  mpi_communicator& operator=(const mpi_communicator&) = delete;

  MPI_Comm native() const noexcept { return comm_.get(); }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  static int group_rank(std::span<const int> ranks, int comm_rank) noexcept {
    return redist::group_rank(ranks, comm_rank);
  }

  // The sub-communicator of exactly `ranks` (ranks of this communicator; its rank i is ranks[i]), nullptr on
  // a rank that is not a member, without communicating. The first call for a rank tuple is collective over
  // its members only (MPI_Comm_create_group); later calls return the cached one, which lives as long as this
  // object (or the one it is moved into). All ranks in order make a communicator of its own, like any set.
  const mpi_communicator* group(std::span<const int> ranks) const {
    if (const auto it = groups_.find(ranks); it != groups_.end()) return it->second.get();
    detail::check_group_ranks("redist::mpi_communicator::group", ranks, size_);
    if (redist::group_rank(ranks, rank_) < 0) return nullptr;
    MPI_Group parent = MPI_GROUP_NULL;
    MPI_Group members = MPI_GROUP_NULL;
    detail::mpi_check(MPI_Comm_group(native(), &parent), "MPI_Comm_group");
    int rc = MPI_Group_incl(parent, static_cast<int>(ranks.size()), ranks.data(), &members);
    MPI_Group_free(&parent);
    detail::mpi_check(rc, "MPI_Group_incl");
    MPI_Comm sub = MPI_COMM_NULL;
    rc = MPI_Comm_create_group(native(), members, group_tag(ranks), &sub);
    MPI_Group_free(&members);
    detail::mpi_check(rc, "MPI_Comm_create_group");
    auto child = std::unique_ptr<mpi_communicator>(new mpi_communicator(adopt{}, sub));
    return groups_.emplace(std::vector<int>(ranks.begin(), ranks.end()), std::move(child))
        .first->second.get();
  }

  // ---- collectives: every rank calls them, in the same order ----
  // buf has the same size on every rank.
  void broadcast(std::span<std::byte> buf, int root) const {
    detail::for_each_chunk(buf.size(), [&](std::size_t offset, int n) {
      detail::mpi_check(MPI_Bcast(buf.data() + offset, n, MPI_BYTE, root, native()), "MPI_Bcast");
    });
  }

  // Rank p's send lands at recv[displs[p], +counts[p]) on root; recv, counts and displs matter on root only.
  void gatherv(std::span<const std::byte> send, std::span<std::byte> recv,
               std::span<const std::size_t> counts, std::span<const std::size_t> displs, int root) const {
    const std::vector<segment> from =
        root_blocks("redist::mpi_communicator::gatherv", "recv", recv, counts, displs, send.size(), root);
    const const_segment mine{send.data(), send.size()};
    exchange(
        [&](int p) { return p == root ? std::span(&mine, 1) : std::span<const const_segment>(); },
        [&](int p) { return from.empty() ? std::span<const segment>() : std::span(&from[index(p)], 1); });
  }

  // Root's send[displs[p], +counts[p]) lands in rank p's recv, which must be exactly that size; send, counts
  // and displs matter on root only.
  void scatterv(std::span<const std::byte> send, std::span<const std::size_t> counts,
                std::span<const std::size_t> displs, std::span<std::byte> recv, int root) const {
    const std::vector<const_segment> to =
        root_blocks("redist::mpi_communicator::scatterv", "send", send, counts, displs, recv.size(), root);
    const segment mine{recv.data(), recv.size()};
    exchange(
        [&](int p) { return to.empty() ? std::span<const const_segment>() : std::span(&to[index(p)], 1); },
        [&](int p) { return p == root ? std::span(&mine, 1) : std::span<const segment>(); });
  }

  // send[send_displs[p], +send_counts[p]) goes to rank p; what rank p sends lands at recv[recv_displs[p],
  // ...): ialltoallv's exchange, completed.
  void alltoallv(std::span<const std::byte> send, std::span<const std::size_t> send_counts,
                 std::span<const std::size_t> send_displs, std::span<std::byte> recv,
                 std::span<const std::size_t> recv_counts, std::span<const std::size_t> recv_displs) const {
    ialltoallv(send, send_counts, send_displs, recv, recv_counts, recv_displs).wait();
  }

  // ---- nonblocking all-to-alls: started now, completed by the request's wait(). Collective: every rank
  // starts them in the same order relative to the other collectives. The request keeps its own copies of the
  // counts, displacements and datatypes; the memory moved must stay alive and untouched until it completes.

  // alltoallv's exchange, started: send[send_displs[p], +send_counts[p]) goes to rank p, what rank p sends
  // lands at recv[recv_displs[p], ...). One MPI_Ialltoallw: MPI_BYTE blocks when each side's blocks lie
  // within max_count() bytes of its lowest one, else a hindexed datatype per rank over distances from it.
  [[nodiscard]] mpi_request ialltoallv(std::span<const std::byte> send,
                                       std::span<const std::size_t> send_counts,
                                       std::span<const std::size_t> send_displs, std::span<std::byte> recv,
                                       std::span<const std::size_t> recv_counts,
                                       std::span<const std::size_t> recv_displs) const {
    const char* who = "redist::mpi_communicator::ialltoallv";
    detail::check_layout(who, "send", send_counts, send_displs, send.size(), size_);
    detail::check_layout(who, "recv", recv_counts, recv_displs, recv.size(), size_);
    const auto n = static_cast<std::size_t>(size_);
    std::vector<const_segment> to(n);
    std::vector<segment> from(n);
    for (std::size_t p = 0; p < n; ++p) {
      to[p] = {send.data() + send_displs[p], send_counts[p]};
      from[p] = {recv.data() + recv_displs[p], recv_counts[p]};
    }
    return start_exchange([&](int p) { return std::span(&to[index(p)], 1); },
                          [&](int p) { return std::span(&from[index(p)], 1); });
  }

  // Equal blocks: send and recv hold size() blocks of `block` bytes; block p goes to (comes from) rank p.
  void alltoall(std::span<const std::byte> send, std::span<std::byte> recv, std::size_t block) const {
    std::size_t total = 0;
    if (!detail::checked_mul(block, static_cast<std::size_t>(size_), total) || send.size() != total ||
        recv.size() != total) {
      detail::fail("redist::mpi_communicator::alltoall: send has ", send.size(), " and recv ", recv.size(),
                   " bytes, expected ", size_, " blocks of ", block, " bytes");
    }
    if (block <= detail::max_count()) {
      const int n = static_cast<int>(block);
      detail::mpi_check(MPI_Alltoall(send.data(), n, MPI_BYTE, recv.data(), n, MPI_BYTE, native()),
                        "MPI_Alltoall");
      return;
    }
    std::vector<int> lengths;  // one datatype of `block` bytes (extent `block`), in blocks within INT_MAX
    std::vector<MPI_Aint> displs;
    detail::append_blocks(0, block, lengths, displs);
    detail::mpi_types types;
    const MPI_Datatype type = types.hindexed(lengths, displs);
    detail::mpi_check(MPI_Alltoall(send.data(), 1, type, recv.data(), 1, type, native()), "MPI_Alltoall");
  }

  // Equal blocks: every rank's mine, in rank order, into out (size() blocks of mine.size() bytes). One
  // MPI_Allgather: the opening of every op (the agreement, detail::agree).
  void allgather(std::span<const std::byte> mine, std::span<std::byte> out) const {
    const auto n = static_cast<std::size_t>(size_);
    if (out.size() != mine.size() * n)
      detail::fail("redist::mpi_communicator::allgather: ", out.size(), " bytes for ", size_, " blocks of ",
                   mine.size());
    if (out.size() > detail::max_count())
      return gather_into(mine, std::vector<std::uint64_t>(n, mine.size()), out);
    const int count = static_cast<int>(mine.size());
    detail::mpi_check(MPI_Allgather(mine.data(), count, MPI_BYTE, out.data(), count, MPI_BYTE, native()),
                      "MPI_Allgather");
  }

  // Everyone's bytes, in rank order, where every rank knows every rank's size (sizes[p], the same on every
  // rank, as the agreement returns them): one MPI_Allgatherv.
  std::vector<std::byte> allgatherv(std::span<const std::byte> mine,
                                    std::span<const std::uint64_t> sizes) const {
    std::vector<std::byte> out(std::accumulate(sizes.begin(), sizes.end(), std::uint64_t{0}));
    gather_into(mine, sizes, out);
    return out;
  }

  // The maximum, minimum or sum of `value` over every rank (for tests and benchmarks).
  std::uint64_t allreduce_max(std::uint64_t value) const { return allreduce(value, MPI_MAX); }
  std::uint64_t allreduce_min(std::uint64_t value) const { return allreduce(value, MPI_MIN); }
  std::uint64_t allreduce_sum(std::uint64_t value) const { return allreduce(value, MPI_SUM); }
  // The minimum and the maximum in one MPI_Allreduce (the maximum of value and of ~value), for tests: whether
  // every rank holds the same value.
  std::pair<std::uint64_t, std::uint64_t> allreduce_min_max(std::uint64_t value) const {
    std::uint64_t in[2] = {~value, value};
    std::uint64_t out[2] = {0, 0};
    detail::mpi_check(MPI_Allreduce(in, out, 2, MPI_UINT64_T, MPI_MAX, native()), "MPI_Allreduce");
    return {~out[0], out[1]};
  }

  void barrier() const { detail::mpi_check(MPI_Barrier(native()), "MPI_Barrier"); }

  // ---- point to point: the receiver names the exact size; chunks of one message share its tag ----
  void send(std::span<const std::byte> buf, int dst, int tag) const {
    detail::for_each_chunk(buf.size(), [&](std::size_t offset, int n) {
      detail::mpi_check(MPI_Send(buf.data() + offset, n, MPI_BYTE, dst, tag, native()), "MPI_Send");
    });
  }

  void recv(std::span<std::byte> buf, int src, int tag) const {
    detail::for_each_chunk(buf.size(), [&](std::size_t offset, int n) {
      MPI_Status status;
      detail::mpi_check(MPI_Recv(buf.data() + offset, n, MPI_BYTE, src, tag, native(), &status), "MPI_Recv");
      detail::check_received(status, n, "recv");
    });
  }

  // ---- nonblocking: the buffer must stay alive and untouched until the request completes ----
  [[nodiscard]] mpi_request isend(std::span<const std::byte> buf, int dst, int tag) const {
    return start(buf.size(), "MPI_Isend", false, [&](std::size_t offset, int n, MPI_Request* r) {
      return MPI_Isend(buf.data() + offset, n, MPI_BYTE, dst, tag, native(), r);
    });
  }

  [[nodiscard]] mpi_request irecv(std::span<std::byte> buf, int src, int tag) const {
    return start(buf.size(), "MPI_Irecv", true, [&](std::size_t offset, int n, MPI_Request* h) {
      return MPI_Irecv(buf.data() + offset, n, MPI_BYTE, src, tag, native(), h);
    });
  }

  // A group of point-to-point transfers (see mpi_p2p_group); not collective: only the peers take part.
  [[nodiscard]] mpi_p2p_group start_group() const noexcept { return mpi_p2p_group(native()); }
  // Collective: every rank starts it in the same order relative to the other collectives.
  [[nodiscard]] mpi_request ibroadcast(std::span<std::byte> buf, int root) const {
    return start(buf.size(), "MPI_Ibcast", false, [&](std::size_t offset, int n, MPI_Request* r) {
      return MPI_Ibcast(buf.data() + offset, n, MPI_BYTE, root, native(), r);
    });
  }

 private:
  struct adopt {};

  // Takes ownership of `owned` (a communicator redist created) and makes its errors return.
  mpi_communicator(adopt, MPI_Comm owned) : comm_(owned) {
    detail::mpi_check(MPI_Comm_set_errhandler(owned, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::mpi_check(MPI_Comm_rank(owned, &rank_), "MPI_Comm_rank");
    detail::mpi_check(MPI_Comm_size(owned, &size_), "MPI_Comm_size");
  }

  static MPI_Comm duplicate(MPI_Comm user) {
    int initialized = 0;
    int finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized == 0 || finalized != 0) {
      detail::fail(
          "redist::mpi_communicator: MPI is ", finalized != 0 ? "already finalized" : "not initialized",
          ": call MPI_Init before creating a communicator and MPI_Finalize after destroying it (redist "
          "never initializes or finalizes MPI)");
    }
    if (user == MPI_COMM_NULL) {
      detail::fail(
          "redist::mpi_communicator: the communicator is MPI_COMM_NULL (is this rank outside the group "
          "it was created for?)");
    }
    MPI_Comm dup = MPI_COMM_NULL;
    detail::mpi_check(MPI_Comm_dup(user, &dup), "MPI_Comm_dup");
    return dup;
  }

  // MPI_Comm_create_group's tag: the same on every member for the same rank tuple, and different tuples
  // rarely share one, so concurrent creations do not cross. A fingerprint within 0..32767 (MPI_TAG_UB is at
  // least 32767).
  static int group_tag(std::span<const int> ranks) noexcept {
    return static_cast<int>(detail::fingerprint().add_all(ranks).value() % 32768);
  }

  static std::size_t index(int p) noexcept { return static_cast<std::size_t>(p); }

  // allgatherv's transfer into out (the sizes' sum): one MPI_Allgatherv where every count and displacement
  // fits an int, else the exchange of one piece to every rank.
  void gather_into(std::span<const std::byte> mine, std::span<const std::uint64_t> sizes,
                   std::span<std::byte> out) const {
    const std::size_t n = sizes.size();
    std::vector<std::size_t> offsets(n + 1, 0);
    for (std::size_t p = 0; p < n; ++p) offsets[p + 1] = offsets[p] + sizes[p];
    if (offsets[n] <= detail::max_count()) {
      std::vector<int> ints(2 * n);
      for (std::size_t p = 0; p < n; ++p) {
        ints[p] = static_cast<int>(sizes[p]);
        ints[n + p] = static_cast<int>(offsets[p]);
      }
      detail::mpi_check(MPI_Allgatherv(mine.data(), static_cast<int>(mine.size()), MPI_BYTE, out.data(),
                                       ints.data(), ints.data() + n, MPI_BYTE, native()),
                        "MPI_Allgatherv");
      return;
    }
    const const_segment piece{mine.data(), mine.size()};
    std::vector<segment> from(n);
    for (std::size_t p = 0; p < n; ++p) from[p] = {out.data() + offsets[p], sizes[p]};
    exchange([&](int) { return std::span(&piece, 1); }, [&](int p) { return std::span(&from[index(p)], 1); });
  }

  // gatherv's and scatterv's blocks on root, one per rank, after checking them (nothing elsewhere). Root's
  // own block must be as large as its other buffer, own_bytes.
  template <class Byte>
  std::vector<detail::segment_for<Byte>> root_blocks(const char* who, const char* buffer, std::span<Byte> buf,
                                                     std::span<const std::size_t> counts,
                                                     std::span<const std::size_t> displs,
                                                     std::size_t own_bytes, int root) const {
    std::vector<detail::segment_for<Byte>> blocks;
    if (root < 0 || root >= size_) {
      detail::fail(who, ": root ", root, " is out of range for a communicator of size ", size_);
    }
    if (rank_ != root) return blocks;
    detail::check_layout(who, buffer, counts, displs, buf.size(), size_);
    if (counts[index(root)] != own_bytes) {
      detail::fail(who, ": root's own count is ", counts[index(root)], " bytes but its buffer holds ",
                   own_bytes);
    }
    for (std::size_t p = 0; p < counts.size(); ++p) blocks.push_back({buf.data() + displs[p], counts[p]});
    return blocks;
  }

  std::uint64_t allreduce(std::uint64_t value, MPI_Op op) const {
    std::uint64_t result = 0;
    detail::mpi_check(MPI_Allreduce(&value, &result, 1, MPI_UINT64_T, op, native()), "MPI_Allreduce");
    return result;
  }

  // One request per chunk: begin(offset, count, &handle) starts it and returns MPI's code; a receive's
  // chunks check what arrives.
  template <class Begin>
  static mpi_request start(std::size_t bytes, const char* what, bool receive, Begin begin) {
    mpi_request r;
    detail::for_each_chunk(bytes, [&](std::size_t offset, int n) {
      r.add(what, receive ? n : mpi_request::not_a_recv, [&](MPI_Request* h) { return begin(offset, n, h); });
    });
    return r;
  }

  // exchange(), started: one MPI_Ialltoallw, also where MPI_BYTE blocks would allow MPI_Ialltoallv on this
  // rank, since another rank may need datatypes and every rank must make the same call; the request owns the
  // arrays and datatypes MPI reads until completion.
  template <class FromMe, class ToMe>
  mpi_request start_exchange(FromMe from_me, ToMe to_me) const {
    const auto n = static_cast<std::size_t>(size_);
    mpi_request r;
    r.args_ = std::make_unique<detail::mpi_collective_args>();
    detail::mpi_collective_args& a = *r.args_;
    a.ints.assign(4 * n, 0);
    a.types.assign(2 * n, MPI_BYTE);
    int* const ints = a.ints.data();
    MPI_Datatype* const types = a.types.data();
    const void* sbuf = detail::describe_side(size_, from_me, ints, ints + n, types, a.owned);
    void* rbuf = const_cast<void*>(
        detail::describe_side(size_, to_me, ints + 2 * n, ints + 3 * n, types + n, a.owned));
    r.add("MPI_Ialltoallw", mpi_request::not_a_recv, [&](MPI_Request* h) {
      return MPI_Ialltoallw(sbuf, ints, ints + n, types, rbuf, ints + 2 * n, ints + 3 * n, types + n,
                            native(), h);
    });
    return r;
  }

  // One MPI_Alltoallw: the pieces from_me(p) lists go to rank p, the bytes from rank p fill the pieces
  // to_me(p) lists. Each side decides alone (the other ranks need not know): MPI_BYTE counts and
  // displacements when every rank's bytes are one block within INT_MAX bytes of the side's lowest address,
  // else one hindexed datatype per rank over distances from that address, blocks split at INT_MAX. Always
  // MPI_Alltoallw, never MPI_Alltoallv where a rank could: every rank must make the same call.
  template <class FromMe, class ToMe>
  void exchange(FromMe from_me, ToMe to_me) const {
    const auto n = static_cast<std::size_t>(size_);
    // Send counts, send displacements, receive counts, receive displacements.
    std::vector<int> ints(4 * n, 0);
    std::vector<MPI_Datatype> types(2 * n, MPI_BYTE);
    detail::mpi_types owned;
    const void* sbuf =
        detail::describe_side(size_, from_me, ints.data(), ints.data() + n, types.data(), owned);
    void* rbuf = const_cast<void*>(detail::describe_side(size_, to_me, ints.data() + 2 * n,
                                                         ints.data() + 3 * n, types.data() + n, owned));
    detail::mpi_check(MPI_Alltoallw(sbuf, ints.data(), ints.data() + n, types.data(), rbuf,
                                    ints.data() + 2 * n, ints.data() + 3 * n, types.data() + n, native()),
                      "MPI_Alltoallw");
  }

  detail::mpi_comm_owner comm_;  // declared first, destroyed last: after the sub-groups made from it
  mutable std::map<std::vector<int>, std::unique_ptr<mpi_communicator>, detail::rank_tuple_less> groups_;
  int rank_ = 0;
  int size_ = 0;
};

static_assert(communicator<mpi_communicator>);

}  // namespace redist
