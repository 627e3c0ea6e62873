// redist's communicator interface: the memory pieces the zero-copy exchange moves, the communicator concept
// every backend models (mpi_communicator, self_communicator, nccl_communicator) and rank-set helpers they
// share.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
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
concept p2p_group = requires(G& g, std::span<const std::byte> cbuf, std::span<std::byte> buf) {
  g.send(cbuf, 0);
  g.recv(buf, 0);
  { std::move(g).finish() } -> std::same_as<Request>;
};

// A communicator: ranks 0..size()-1, byte-based collectives that every rank calls, point to point and
// nonblocking operations (all of them returning the one request type, whose wait() completes them), and
// cached sub-communicators of a rank set (group(), nullptr on non-members).
// Sizes are std::size_t and may exceed INT_MAX. Checks a representative subset of the operations.
template <class C>
concept communicator = requires(const C& c, std::span<std::byte> buf, std::span<const std::byte> cbuf,
                                std::span<const std::size_t> sizes, std::span<const int> ranks,
                                std::span<const std::vector<const_segment>> send_pieces,
                                std::span<const std::vector<segment>> recv_pieces, std::uint64_t value) {
  typename C::request;
  { c.rank() } -> std::same_as<int>;
  { c.size() } -> std::same_as<int>;
  { c.group(ranks) } -> std::same_as<const C*>;
  c.broadcast(buf, 0);
  c.gatherv(cbuf, buf, sizes, sizes, 0);
  c.scatterv(cbuf, sizes, sizes, buf, 0);
  c.alltoallv(cbuf, sizes, sizes, buf, sizes, sizes);
  c.alltoall_segments(send_pieces, recv_pieces);
  c.alltoall(cbuf, buf, std::size_t{1});
  { c.allgatherv(cbuf) } -> std::same_as<std::vector<std::byte>>;
  { c.allreduce_max(value) } -> std::same_as<std::uint64_t>;
  { c.allreduce_min_max(value) } -> std::same_as<std::pair<std::uint64_t, std::uint64_t>>;
  c.barrier();
  c.send(cbuf, 0, 0);
  c.recv(buf, 0, 0);
  { c.isend(cbuf, 0, 0) } -> std::same_as<typename C::request>;
  { c.irecv(buf, 0, 0) } -> std::same_as<typename C::request>;
  { c.ibroadcast(buf, 0) } -> std::same_as<typename C::request>;
  { c.ialltoallv(cbuf, sizes, sizes, buf, sizes, sizes) } -> std::same_as<typename C::request>;
  { c.ialltoall_segments(send_pieces, recv_pieces) } -> std::same_as<typename C::request>;
  c.irecv(buf, 0, 0).wait();
  { c.start_group() } -> p2p_group<typename C::request>;
};

namespace detail {

// An exchange's pieces with each peer's several pieces made one block: a peer's send pieces are packed into
// one buffer here, a peer's receive pieces get one landing block that unpack() spreads out once the exchange
// is complete; a peer with one piece keeps it. Open MPI moves a contiguous block between the processes of a
// node with a single copy, a derived datatype through a fragment pipeline several times slower, so one
// copy per byte is the cheaper way to move scattered pieces. Points into the pieces it was given.
class packed_exchange {
 public:
  packed_exchange(std::span<const std::vector<const_segment>> send,
                  std::span<const std::vector<segment>> recv)
      : recv_(recv), send_blocks_(send.size()), recv_blocks_(recv.size()) {
    std::size_t out = 0, in = 0;
    for (const auto& l : send)
      if (scattered(l)) out += total(l);
    for (const auto& l : recv)
      if (scattered(l)) in += total(l);
    out_.reset(new std::byte[out]);  // uninitialized: every byte is written before it is read
    in_.reset(new std::byte[in]);
    std::byte* at = out_.get();
    for (std::size_t p = 0; p < send.size(); ++p) {
      if (!scattered(send[p])) {
        send_blocks_[p] = send[p];
        continue;
      }
      send_blocks_[p] = {{at, total(send[p])}};
      host_space::gather(send[p], at);
      at += total(send[p]);
    }
    at = in_.get();
    for (std::size_t p = 0; p < recv.size(); ++p) {
      if (!scattered(recv[p])) {
        recv_blocks_[p] = recv[p];
        continue;
      }
      recv_blocks_[p] = {{at, total(recv[p])}};
      at += total(recv[p]);
    }
  }

  std::span<const std::vector<const_segment>> send() const noexcept { return send_blocks_; }
  std::span<const std::vector<segment>> recv() const noexcept { return recv_blocks_; }

  // After the exchange: the landing blocks' bytes into the receive pieces.
  void unpack() const {
    for (std::size_t p = 0; p < recv_.size(); ++p) {
      if (scattered(recv_[p])) host_space::scatter(recv_blocks_[p].front().data, recv_[p]);
    }
  }

 private:
  template <class Segment>
  static bool scattered(const std::vector<Segment>& l) {
    return std::count_if(l.begin(), l.end(), [](const Segment& s) { return s.bytes != 0; }) > 1;
  }
  template <class Segment>
  static std::size_t total(const std::vector<Segment>& l) {
    return total_bytes(std::span<const Segment>(l));
  }

  std::span<const std::vector<segment>> recv_;
  std::vector<std::vector<const_segment>> send_blocks_;
  std::vector<std::vector<segment>> recv_blocks_;
  std::unique_ptr<std::byte[]> out_, in_;
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
