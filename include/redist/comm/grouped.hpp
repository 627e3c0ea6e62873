// redist::grouped: the v-collectives (alltoallv, gatherv, scatterv, broadcast to a subset) written once over
// a communicator's point-to-point group (start_group(), send(), recv(), finish()): what a backend without
// v-collectives (NCCL) runs, and what the MPI tests compare with MPI's own collectives byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"

namespace redist::grouped {

// send[send_displs[p], +send_counts[p]) goes to rank p; what rank p sends lands at recv[recv_displs[p], ...).
// Every rank posts its transfers to the others in one group, peers in rotated order (rank r + k sends to,
// rank r - k receives from, for k = 1 .. size - 1) so that the ranks do not all start with the same peer; its
// own block is copied by `space` (space.copy(to, from, bytes): host_space, or a device backend's copy on its
// stream). Zero-byte blocks are not sent. Returns the request that completes the exchange.
template <class Comm, class Space = host_space>
[[nodiscard]] typename Comm::request ialltoallv(const Comm& c, std::span<const std::byte> send,
                                                std::span<const std::size_t> send_counts,
                                                std::span<const std::size_t> send_displs,
                                                std::span<std::byte> recv,
                                                std::span<const std::size_t> recv_counts,
                                                std::span<const std::size_t> recv_displs,
                                                const Space& space = {}) {
  constexpr const char* who = "redist::grouped::alltoallv";
  const int n = c.size();
  const int me = c.rank();
  detail::check_layout(who, "send", send_counts, send_displs, send.size(), n);
  detail::check_layout(who, "recv", recv_counts, recv_displs, recv.size(), n);
  const auto own = static_cast<std::size_t>(me);
  if (send_counts[own] != recv_counts[own]) {
    detail::fail(who, ": rank ", me, " sends itself ", send_counts[own], " bytes but expects ",
                 recv_counts[own]);
  }
  auto g = c.start_group();
  for (int k = 1; k < n; ++k) {
    const auto to = static_cast<std::size_t>((me + k) % n);
    const auto from = static_cast<std::size_t>((me - k + n) % n);
    g.send(send.subspan(send_displs[to], send_counts[to]), static_cast<int>(to));
    g.recv(recv.subspan(recv_displs[from], recv_counts[from]), static_cast<int>(from));
  }
  space.copy(recv.data() + recv_displs[own], send.data() + send_displs[own], send_counts[own]);
  return std::move(g).finish();
}

template <class Comm, class Space = host_space>
void alltoallv(const Comm& c, std::span<const std::byte> send, std::span<const std::size_t> send_counts,
               std::span<const std::size_t> send_displs, std::span<std::byte> recv,
               std::span<const std::size_t> recv_counts, std::span<const std::size_t> recv_displs,
               const Space& space = {}) {
  ialltoallv(c, send, send_counts, send_displs, recv, recv_counts, recv_displs, space).wait();
}

// Rank p's send lands at recv[displs[p], +counts[p]) on root, which receives from every other rank with bytes
// in one group; recv, counts and displs matter on root only, where counts[p] must be what rank p sends.
// Root's own block is copied by `space`.
template <class Comm, class Space = host_space>
[[nodiscard]] typename Comm::request igatherv(const Comm& c, std::span<const std::byte> send,
                                              std::span<std::byte> recv, std::span<const std::size_t> counts,
                                              std::span<const std::size_t> displs, int root,
                                              const Space& space = {}) {
  constexpr const char* who = "redist::grouped::gatherv";
  const int n = c.size();
  if (root < 0 || root >= n)
    detail::fail(who, ": root ", root, " is out of range for a communicator of size ", n);
  auto g = c.start_group();
  if (c.rank() != root) {
    g.send(send, root);
    return std::move(g).finish();
  }
  detail::check_layout(who, "recv", counts, displs, recv.size(), n);
  const auto r = static_cast<std::size_t>(root);
  if (counts[r] != send.size())
    detail::fail(who, ": root's own count is ", counts[r], " bytes but its buffer holds ", send.size());
  for (int p = 0; p < n; ++p) {
    const auto q = static_cast<std::size_t>(p);
    if (p != root) g.recv(recv.subspan(displs[q], counts[q]), p);
  }
  space.copy(recv.data() + displs[r], send.data(), send.size());
  return std::move(g).finish();
}

// Root's send[displs[p], +counts[p]) lands in rank p's recv, which must be exactly that size; send, counts
// and displs matter on root only. Root's own block is copied by `space`.
template <class Comm, class Space = host_space>
[[nodiscard]] typename Comm::request iscatterv(const Comm& c, std::span<const std::byte> send,
                                               std::span<const std::size_t> counts,
                                               std::span<const std::size_t> displs, std::span<std::byte> recv,
                                               int root, const Space& space = {}) {
  constexpr const char* who = "redist::grouped::scatterv";
  const int n = c.size();
  if (root < 0 || root >= n)
    detail::fail(who, ": root ", root, " is out of range for a communicator of size ", n);
  auto g = c.start_group();
  if (c.rank() != root) {
    g.recv(recv, root);
    return std::move(g).finish();
  }
  detail::check_layout(who, "send", counts, displs, send.size(), n);
  const auto r = static_cast<std::size_t>(root);
  if (counts[r] != recv.size())
    detail::fail(who, ": root's own count is ", counts[r], " bytes but its buffer holds ", recv.size());
  for (int p = 0; p < n; ++p) {
    const auto q = static_cast<std::size_t>(p);
    if (p != root) g.send(send.subspan(displs[q], counts[q]), p);
  }
  space.copy(recv.data(), send.data() + displs[r], recv.size());
  return std::move(g).finish();
}

// Root's buf reaches buf on every rank of `members` (ranks of c, root among them or not); the other ranks
// take no part and may skip the call. buf has the same size on root and every member.
template <class Comm>
[[nodiscard]] typename Comm::request ibroadcast(const Comm& c, std::span<std::byte> buf, int root,
                                                std::span<const int> members) {
  constexpr const char* who = "redist::grouped::broadcast";
  const int n = c.size();
  if (root < 0 || root >= n)
    detail::fail(who, ": root ", root, " is out of range for a communicator of size ", n);
  detail::check_group_ranks(who, members, n);
  auto g = c.start_group();
  if (c.rank() == root) {
    for (const int m : members)
      if (m != root) g.send(buf, m);
  } else if (group_rank(members, c.rank()) >= 0) {
    g.recv(buf, root);
  }
  return std::move(g).finish();
}

// Every rank's block on every rank, in rank order, once each rank's size is known (sizes[p] bytes from rank
// p, this rank being `me`), moved by the started group g: peers in rotated order; this rank's own block sent
// to itself when `self_send` (device memory, which the CPU cannot read), else copied by the CPU. Completes
// the group.
template <class Group>
std::vector<std::byte> allgather_blocks(Group g, std::span<const std::byte> mine,
                                        std::span<const std::uint64_t> sizes, std::size_t me,
                                        bool self_send) {
  const std::size_t n = sizes.size();
  std::vector<std::size_t> offsets(n + 1, 0);
  for (std::size_t p = 0; p < n; ++p) offsets[p + 1] = offsets[p] + static_cast<std::size_t>(sizes[p]);
  std::vector<std::byte> out(offsets[n]);
  for (std::size_t k = 1; k < n; ++k) {
    const std::size_t from = (me + n - k) % n;
    g.send(mine, static_cast<int>((me + k) % n));
    g.recv(std::span(out).subspan(offsets[from], offsets[from + 1] - offsets[from]), static_cast<int>(from));
  }
  if (self_send) {
    g.send(mine, static_cast<int>(me));
    g.recv(std::span(out).subspan(offsets[me], mine.size()), static_cast<int>(me));
  } else {
    host_space::copy(out.data() + offsets[me], mine.data(), mine.size());
  }
  std::move(g).finish().wait();
  return out;
}

}  // namespace redist::grouped
