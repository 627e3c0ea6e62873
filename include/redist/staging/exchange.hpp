// The staging layer's exchange of pieces, written once above the communicator concept: each peer's pieces,
// several of them packed into one block (received into one landing block and spread out after), moved by one
// group of point-to-point transfers; a rank's pieces to itself are copied straight across.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/staging/buffer.hpp"
#include "redist/staging/copy_list.hpp"

namespace redist::testing {

// Tests only: called on this rank with every block an exchange in host memory received from another rank,
// once it has arrived and before it is unpacked, so that a test can change bytes on the way (checksums must
// catch it). Null in programs: then one branch per exchange.
inline void (*arrival_hook)(std::span<std::byte> block) = nullptr;

}  // namespace redist::testing

namespace redist::detail {

// An exchange's pieces with each other peer's several pieces made one block: a peer's send pieces are packed
// into one buffer here, a peer's receive pieces get one landing block that unpack() spreads out once the
// transfers are complete; a peer with one piece keeps it, and peer `self` is left alone. Open MPI moves a
// contiguous block between the processes of a node with a single copy, a derived datatype through a
// fragment pipeline several times slower, so one copy per byte is the cheaper way to move scattered pieces.
// Keeps its own copy of the receive pieces it unpacks into: the caller's lists may change once it is made.
// Its buffers (memory of `space`) come from `scratch` when given (scratch_bytes() of them, kept by the
// caller between calls), else are allocated for the exchange. Packing and unpacking are one table each.
template <class Space = host_space>
class packed_exchange {
 public:
  packed_exchange(std::span<const std::vector<const_segment>> send,
                  std::span<const std::vector<segment>> recv, std::size_t self, std::byte* scratch = nullptr,
                  const Space& space = {})
      : self_(self), send_blocks_(send.size()), recv_blocks_(recv.size()), space_(space), owned_(space) {
    const std::size_t bytes = scratch_bytes(send, recv, self);
    if (scratch == nullptr && bytes != 0)
      scratch = owned_.resize(bytes).data();  // every byte is written first
    std::byte* at = scratch;
    copy_list packing;
    for (std::size_t p = 0; p < send.size(); ++p) {
      if (!scattered(send[p], p, self)) {
        send_blocks_[p] = send[p];
        continue;
      }
      send_blocks_[p] = {{at, total(send[p])}};
      for (const auto& s : send[p]) {
        packing.copy(at, s.data, s.bytes);
        at += s.bytes;
      }
    }
    packing.run(space_);
    for (std::size_t p = 0; p < recv.size(); ++p) {
      if (!scattered(recv[p], p, self)) {
        recv_blocks_[p] = recv[p];
        continue;
      }
      recv_blocks_[p] = {{at, total(recv[p])}};
      for (const auto& s : recv[p]) {
        unpack_.copy(s.data, at, s.bytes);
        at += s.bytes;
      }
    }
  }

  // The bytes of the buffers an exchange of these pieces packs into and lands in.
  static std::size_t scratch_bytes(std::span<const std::vector<const_segment>> send,
                                   std::span<const std::vector<segment>> recv, std::size_t self) {
    return packed(send, self) + packed(recv, self);
  }

  std::span<const std::vector<const_segment>> send() const noexcept { return send_blocks_; }
  std::span<const std::vector<segment>> recv() const noexcept { return recv_blocks_; }

  // After the transfers: the landing blocks' bytes into the receive pieces.
  void unpack() { unpack_.run(space_); }

 private:
  template <class Segment>
  static bool scattered(const std::vector<Segment>& l, std::size_t peer, std::size_t self) {
    std::size_t pieces = 0;
    for (const auto& s : l) pieces += s.bytes != 0 ? 1 : 0;
    return peer != self && pieces > 1;
  }
  template <class Segment>
  static std::size_t total(const std::vector<Segment>& l) {
    return total_bytes(std::span<const Segment>(l));
  }
  template <class Segment>
  static std::size_t packed(std::span<const std::vector<Segment>> lists, std::size_t self) {
    std::size_t bytes = 0;
    for (std::size_t p = 0; p < lists.size(); ++p)
      if (scattered(lists[p], p, self)) bytes += total(lists[p]);
    return bytes;
  }

  std::size_t self_;
  std::vector<std::vector<const_segment>> send_blocks_;
  std::vector<std::vector<segment>> recv_blocks_;
  copy_list unpack_;  // landing blocks into receive pieces
  Space space_;
  space_buffer<Space> owned_;
};

// An exchange of pieces in flight: the pieces send[p] lists, in order, go to rank p; the bytes from rank p
// fill the pieces recv[p] lists, in order (their total is what rank p sends). Started on construction: a
// peer's pieces packed, every transfer posted in one group (peers in rotated order), this rank's own pieces
// copied; wait() completes the transfers and unpacks. The pieces must stay alive and untouched until then;
// destroying it pending waits for the transfers (ignoring errors), so no transfer writes into memory its
// owner freed.
template <class Comm, class Space = host_space>
class segment_exchange {
 public:
  segment_exchange(const Comm& comm, std::span<const std::vector<const_segment>> send,
                   std::span<const std::vector<segment>> recv, std::byte* scratch = nullptr,
                   const Space& space = {})
      : packed_(checked(comm, send, recv, scratch, space)), self_(static_cast<std::size_t>(comm.rank())) {
    const int n = comm.size();
    const int me = comm.rank();
    auto g = comm.start_group();
    for (int k = 1; k < n; ++k) {
      const auto to = static_cast<std::size_t>((me + k) % n);
      const auto from = static_cast<std::size_t>((me - k + n) % n);
      for (const auto& s : packed_.send()[to]) g.send({s.data, s.bytes}, static_cast<int>(to));
      for (const auto& s : packed_.recv()[from]) g.recv({s.data, s.bytes}, static_cast<int>(from));
    }
    const auto own = static_cast<std::size_t>(me);
    if (total_bytes(std::span(send[own])) != total_bytes(std::span(recv[own]))) {
      fail("redist::exchange_segments: rank ", me, " sends itself ", total_bytes(std::span(send[own])),
           " bytes but expects ", total_bytes(std::span(recv[own])));
    }
    space.copy_pieces(send[own], recv[own]);
    request_.emplace(std::move(g).finish());
  }
  segment_exchange(segment_exchange&&) = delete;
  segment_exchange& operator=(segment_exchange&&) = delete;
  ~segment_exchange() = default;  // request_ (declared last) completes before the packed buffers go

  bool pending() const noexcept { return request_.has_value() && request_->pending(); }

  void wait() {
    if (!request_) return;
    request_->wait();
    request_.reset();
    if constexpr (Space::space == memory_space::host) {
      if (testing::arrival_hook != nullptr) [[unlikely]]
        arrivals();
    }
    packed_.unpack();
  }

 private:
  static packed_exchange<Space> checked(const Comm& comm, std::span<const std::vector<const_segment>> send,
                                        std::span<const std::vector<segment>> recv, std::byte* scratch,
                                        const Space& space) {
    const auto n = static_cast<std::size_t>(comm.size());
    if (send.size() != n || recv.size() != n) {
      fail("redist::exchange_segments: ", send.size(), " send and ", recv.size(),
           " receive piece lists, expected one per rank (", n, ")");
    }
    return packed_exchange<Space>(send, recv, static_cast<std::size_t>(comm.rank()), scratch, space);
  }

  void arrivals() const {
    for (std::size_t p = 0; p < packed_.recv().size(); ++p) {
      if (p == self_) continue;
      for (const auto& s : packed_.recv()[p])
        if (s.bytes != 0) testing::arrival_hook(std::span<std::byte>(s.data, s.bytes));
    }
  }

  packed_exchange<Space> packed_;
  std::optional<typename Comm::request> request_;
  std::size_t self_;
};

// The blocking form: started and completed.
template <class Comm, class Space = host_space>
void exchange_segments(const Comm& comm, std::span<const std::vector<const_segment>> send,
                       std::span<const std::vector<segment>> recv, const Space& space = {}) {
  segment_exchange<Comm, Space>(comm, send, recv, nullptr, space).wait();
}

}  // namespace redist::detail
