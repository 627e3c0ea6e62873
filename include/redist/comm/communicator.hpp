// redist's communicator interface: the memory pieces the zero-copy exchange moves, the communicator concept
// every backend models (mpi_communicator, self_communicator, nccl_communicator) and rank-set helpers they
// share.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"

namespace redist {

// The rank within a group of the communicator rank comm_rank, where the group's rank i is ranks[i]; -1 when
// comm_rank is not in ranks.
inline int group_rank(std::span<const int> ranks, int comm_rank) noexcept {
  const auto it = std::find(ranks.begin(), ranks.end(), comm_rank);
  return it == ranks.end() ? -1 : static_cast<int>(it - ranks.begin());
}

// A group of point-to-point transfers (the shape NCCL offers): sends and receives posted, then finish()ed
// into one request that completes them all.
template <class G, class Request>
concept p2p_group = requires(G& g, std::span<const std::byte> cbuf, std::span<std::byte> buf,
                             std::span<const segment> pieces) {
  g.send(cbuf, 0);
  g.recv(buf, 0);
  g.recv_pieces(pieces, 0);  // one message spread over several pieces
  { std::move(g).finish() } -> std::same_as<Request>;
};

// Completes every request of a range, then throws the first failure, if any: no buffer is released while a
// transfer still uses it.
template <class Requests>
void wait_all(Requests& requests) {
  std::exception_ptr failure;
  for (auto& r : requests) {
    try {
      r.wait();
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
}

// A communicator, as the library uses one: ranks 0..size()-1; byte-based collectives that every rank calls
// (broadcast, gatherv, scatterv, alltoall(v), allgather of equal blocks, allgatherv with every rank's size
// known); send and recv and their nonblocking forms, ibroadcast among them, all returning the one
// request type, whose wait() completes them; the grouped point-to-point primitive (start_group()); and
// cached sub-communicators of a rank set (group(), nullptr on non-members). Sizes are std::size_t and may
// exceed INT_MAX. A backend may offer more (the MPI and self communicators have barrier, allreduces and
// ialltoallv for tests and benchmarks); the library calls nothing else.
template <class C>
concept communicator = requires(const C& c, std::span<std::byte> buf, std::span<const std::byte> cbuf,
                                std::span<const std::size_t> sizes, std::span<const int> ranks,
                                std::span<const std::uint64_t> words) {
  typename C::request;
  { c.rank() } -> std::same_as<int>;
  { c.size() } -> std::same_as<int>;
  { c.group(ranks) } -> std::same_as<const C*>;
  c.broadcast(buf, 0);
  c.gatherv(cbuf, buf, sizes, sizes, 0);
  c.scatterv(cbuf, sizes, sizes, buf, 0);
  c.alltoallv(cbuf, sizes, sizes, buf, sizes, sizes);
  c.alltoall(cbuf, buf, std::size_t{1});
  c.allgather(cbuf, buf);
  { c.allgatherv(cbuf, words) } -> std::same_as<std::vector<std::byte>>;
  c.send(cbuf, 0, 0);
  c.recv(buf, 0, 0);
  { c.isend(cbuf, 0, 0) } -> std::same_as<typename C::request>;
  { c.irecv(buf, 0, 0) } -> std::same_as<typename C::request>;
  { c.ibroadcast(buf, 0) } -> std::same_as<typename C::request>;
  c.irecv(buf, 0, 0).wait();
  { c.start_group() } -> p2p_group<typename C::request>;
};

// Everyone's bytes, in rank order, on any communicator, where no rank knows the others' sizes: one
// allgather of the sizes, then the allgatherv. counts (if given) receives each rank's size.
template <communicator Comm>
std::vector<std::byte> allgatherv(const Comm& comm, std::span<const std::byte> mine,
                                  std::vector<std::size_t>* counts = nullptr) {
  const std::uint64_t my_size = mine.size();
  std::vector<std::uint64_t> sizes(static_cast<std::size_t>(comm.size()));
  comm.allgather(std::as_bytes(std::span(&my_size, 1)), std::as_writable_bytes(std::span(sizes)));
  auto out = comm.allgatherv(mine, std::span<const std::uint64_t>(sizes));
  if (counts != nullptr) counts->assign(sizes.begin(), sizes.end());
  return out;
}

namespace detail {

// Orders rank tuples so that the group cache can be searched with a span, without building a vector.
struct rank_tuple_less {
  using is_transparent = void;
  bool operator()(std::span<const int> a, std::span<const int> b) const noexcept {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
  }
};

// Throws unless ranks are distinct ranks of a communicator of `size` ranks. Needs no communication, so every
// rank that calls group() with the same bad set throws the same error.
inline void check_group_ranks(const char* who, std::span<const int> ranks, int size) {
  for (const int r : ranks) {
    if (r < 0 || r >= size) fail(who, ": rank ", r, " is out of range for a communicator of size ", size);
  }
  std::vector<int> sorted(ranks.begin(), ranks.end());
  std::sort(sorted.begin(), sorted.end());
  if (const auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end()) {
    fail(who, ": rank ", *dup, " appears more than once in the rank set");
  }
}

// Throws unless counts and displs hold one entry per rank and every [displ, displ + count) lies within a
// buffer of `bytes` bytes.
inline void check_layout(const char* who, const char* buffer, std::span<const std::size_t> counts,
                         std::span<const std::size_t> displs, std::size_t bytes, int size) {
  const auto n = static_cast<std::size_t>(size);
  if (counts.size() != n || displs.size() != n) {
    fail(who, ": ", buffer, " has ", counts.size(), " counts and ", displs.size(),
         " displacements, expected one per rank (", n, ")");
  }
  for (std::size_t p = 0; p < n; ++p) {
    if (displs[p] > bytes || counts[p] > bytes - displs[p]) {
      fail(who, ": ", buffer, " block of rank ", p, " (", counts[p], " bytes at offset ", displs[p],
           ") exceeds the buffer of ", bytes, " bytes");
    }
  }
}

}  // namespace detail
}  // namespace redist
