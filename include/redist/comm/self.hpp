// redist::self_communicator: the communicator of one process (rank 0 of size 1), without MPI: every operation
// of mpi_communicator as a copy or nothing, and messages to itself held until they are received.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/core/error.hpp"

namespace redist {
namespace detail {

// A receive posted by irecv that no send has matched yet; shared with its request.
struct self_posted_recv {
  std::span<std::byte> buf;
  int tag = 0;
  bool done = false;
  bool cancelled = false;  // its request was destroyed: a later send must not write into buf
};

}  // namespace detail

// A nonblocking operation of a self_communicator. Everything but an irecv posted before its send is complete
// at once. wait() on an irecv that no send has matched throws (on one process it would never complete);
// destroying it pending withdraws the receive, so a later send never writes into its buffer. Move-only.
class self_request {
 public:
  self_request() = default;
  self_request(self_request&& other) noexcept : recv_(std::exchange(other.recv_, nullptr)) {}
  self_request& operator=(self_request&& other) noexcept {
    if (this != &other) {
      cancel();
      recv_ = std::exchange(other.recv_, nullptr);
    }
    return *this;
  }
  self_request(const self_request&) = delete;
  self_request& operator=(const self_request&) = delete;
  ~self_request() { cancel(); }

  bool pending() const noexcept { return recv_ != nullptr && !recv_->done; }

  void wait() {
    if (pending()) {
      detail::fail("redist::self_communicator: wait: no send matched the irecv with tag ", recv_->tag,
                   " (on one process it would never complete)");
    }
    recv_.reset();
  }

 private:
  friend class self_communicator;
  explicit self_request(std::shared_ptr<detail::self_posted_recv> recv) noexcept : recv_(std::move(recv)) {}
  void cancel() noexcept {
    if (recv_ != nullptr) recv_->cancelled = true;
    recv_.reset();
  }
  std::shared_ptr<detail::self_posted_recv> recv_;
};

// A group of point-to-point transfers on one process: sends and receives to rank 0 are matched in the order
// they were posted when the group finishes, each send copied into its receive (sizes must agree). Zero-byte
// transfers are not posted, as on mpi_communicator.
class self_p2p_group {
 public:
  void send(std::span<const std::byte> buf, int peer) {
    check_peer("send", peer);
    if (!buf.empty()) sends_.push_back(buf);
  }
  void recv(std::span<std::byte> buf, int peer) {
    recv_pieces(std::array{segment{buf.data(), buf.size()}}, peer);
  }
  // One message spread over several pieces, in order.
  void recv_pieces(std::span<const segment> pieces, int peer) {
    check_peer("recv", peer);
    if (detail::total_bytes(pieces) != 0) recvs_.emplace_back(pieces.begin(), pieces.end());
  }
  [[nodiscard]] self_request finish() && {
    if (sends_.size() != recvs_.size()) {
      detail::fail("redist::self_communicator: a point-to-point group posts ", sends_.size(), " sends and ",
                   recvs_.size(), " receives to rank 0");
    }
    for (std::size_t i = 0; i < sends_.size(); ++i) {
      const std::size_t room = detail::total_bytes(std::span<const segment>(recvs_[i]));
      if (sends_[i].size() != room) {
        detail::fail("redist::self_communicator: a point-to-point group's send ", i, " of ", sends_[i].size(),
                     " bytes meets a receive of ", room);
      }
      host_space::copy_pieces(std::array{const_segment{sends_[i].data(), sends_[i].size()}}, recvs_[i]);
    }
    return {};
  }

 private:
  static void check_peer(const char* op, int peer) {
    if (peer != 0) detail::fail("redist::self_communicator: a group's ", op, " names rank ", peer, ", not 0");
  }
  std::vector<std::span<const std::byte>> sends_;
  std::vector<std::vector<segment>> recvs_;
};

// One process: size 1, rank 0; sub-groups are itself. Messages to itself match as MPI's do (by tag, in order
// of posting); a blocking receive with nothing sent throws instead of waiting forever. Not thread-safe.
// Move-only, since it may hold messages in flight.
class self_communicator {
 public:
  using request = self_request;

  self_communicator() = default;
  self_communicator(self_communicator&&) noexcept = default;
  self_communicator& operator=(self_communicator&&) noexcept = default;
  self_communicator(const self_communicator&) = delete;
  self_communicator& operator=(const self_communicator&) = delete;
  ~self_communicator() = default;

  int rank() const noexcept { return 0; }
  int size() const noexcept { return 1; }
  static int group_rank(std::span<const int> ranks, int comm_rank) noexcept {
    return redist::group_rank(ranks, comm_rank);
  }

  // {0} is this communicator itself (a pointer that, unlike mpi_communicator's cached groups, does not
  // follow a move); the empty set has no members (nullptr).
  const self_communicator* group(std::span<const int> ranks) const {
    detail::check_group_ranks("redist::self_communicator::group", ranks, 1);
    return ranks.empty() ? nullptr : this;
  }

  void broadcast(std::span<std::byte> /*buf*/, int root) const { check_rank("broadcast", "root", root); }

  void gatherv(std::span<const std::byte> send, std::span<std::byte> recv,
               std::span<const std::size_t> counts, std::span<const std::size_t> displs, int root) const {
    check_rank("gatherv", "root", root);
    detail::check_layout("redist::self_communicator::gatherv", "recv", counts, displs, recv.size(), 1);
    check_count("gatherv", counts[0], send.size());
    host_space::copy(recv.data() + displs[0], send.data(), send.size());
  }

  void scatterv(std::span<const std::byte> send, std::span<const std::size_t> counts,
                std::span<const std::size_t> displs, std::span<std::byte> recv, int root) const {
    check_rank("scatterv", "root", root);
    detail::check_layout("redist::self_communicator::scatterv", "send", counts, displs, send.size(), 1);
    check_count("scatterv", counts[0], recv.size());
    host_space::copy(recv.data(), send.data() + displs[0], recv.size());
  }

  void alltoallv(std::span<const std::byte> send, std::span<const std::size_t> send_counts,
                 std::span<const std::size_t> send_displs, std::span<std::byte> recv,
                 std::span<const std::size_t> recv_counts, std::span<const std::size_t> recv_displs) const {
    detail::check_layout("redist::self_communicator::alltoallv", "send", send_counts, send_displs,
                         send.size(), 1);
    detail::check_layout("redist::self_communicator::alltoallv", "recv", recv_counts, recv_displs,
                         recv.size(), 1);
    check_count("alltoallv", send_counts[0], recv_counts[0]);
    host_space::copy(recv.data() + recv_displs[0], send.data() + send_displs[0], send_counts[0]);
  }

  // Complete when it returns (alltoallv's copy); the request has nothing left to wait for.
  [[nodiscard]] self_request ialltoallv(std::span<const std::byte> send,
                                        std::span<const std::size_t> send_counts,
                                        std::span<const std::size_t> send_displs, std::span<std::byte> recv,
                                        std::span<const std::size_t> recv_counts,
                                        std::span<const std::size_t> recv_displs) const {
    detail::check_layout("redist::self_communicator::ialltoallv", "send", send_counts, send_displs,
                         send.size(), 1);
    detail::check_layout("redist::self_communicator::ialltoallv", "recv", recv_counts, recv_displs,
                         recv.size(), 1);
    check_count("ialltoallv", send_counts[0], recv_counts[0]);
    host_space::copy(recv.data() + recv_displs[0], send.data() + send_displs[0], send_counts[0]);
    return {};
  }

  void alltoall(std::span<const std::byte> send, std::span<std::byte> recv, std::size_t block) const {
    if (send.size() != block || recv.size() != block) {
      detail::fail("redist::self_communicator::alltoall: send has ", send.size(), " and recv ", recv.size(),
                   " bytes, expected 1 block of ", block, " bytes");
    }
    host_space::copy(recv.data(), send.data(), block);
  }

  void allgather(std::span<const std::byte> mine, std::span<std::byte> out) const {
    check_count("allgather", mine.size(), out.size());
    host_space::copy(out.data(), mine.data(), mine.size());
  }
  std::vector<std::byte> allgatherv(std::span<const std::byte> mine, std::span<const std::uint64_t>) const {
    return std::vector<std::byte>(mine.begin(), mine.end());
  }

  std::uint64_t allreduce_max(std::uint64_t value) const noexcept { return value; }
  std::uint64_t allreduce_min(std::uint64_t value) const noexcept { return value; }
  std::pair<std::uint64_t, std::uint64_t> allreduce_min_max(std::uint64_t value) const noexcept {
    return {value, value};
  }
  std::uint64_t allreduce_sum(std::uint64_t value) const noexcept { return value; }
  void barrier() const noexcept {}

  // A send is held until a receive with its tag takes it, or goes straight into an irecv posted before it.
  void send(std::span<const std::byte> buf, int dst, int tag) const {
    check_rank("send", "destination", dst);
    for (auto it = posted_.begin(); it != posted_.end();) {
      detail::self_posted_recv& r = **it;
      if (r.cancelled) {
        it = posted_.erase(it);
      } else if (r.tag == tag) {
        check_message("send", tag, buf.size(), r.buf.size());
        host_space::copy(r.buf.data(), buf.data(), buf.size());
        r.done = true;
        posted_.erase(it);
        return;
      } else {
        ++it;
      }
    }
    held_.emplace_back(tag, std::vector<std::byte>(buf.begin(), buf.end()));
  }

  void recv(std::span<std::byte> buf, int src, int tag) const {
    check_rank("recv", "source", src);
    if (!take(buf, tag)) {
      detail::fail("redist::self_communicator::recv: no message with tag ", tag,
                   " was sent (on one process the receive would never complete)");
    }
  }

  [[nodiscard]] self_request isend(std::span<const std::byte> buf, int dst, int tag) const {
    send(buf, dst, tag);
    return {};
  }

  [[nodiscard]] self_request irecv(std::span<std::byte> buf, int src, int tag) const {
    check_rank("irecv", "source", src);
    if (take(buf, tag)) return {};
    auto posted = std::make_shared<detail::self_posted_recv>();
    posted->buf = buf;
    posted->tag = tag;
    posted_.push_back(posted);
    return self_request(std::move(posted));
  }

  [[nodiscard]] self_p2p_group start_group() const noexcept { return {}; }

  [[nodiscard]] self_request ibroadcast(std::span<std::byte> buf, int root) const {
    broadcast(buf, root);
    return {};
  }

 private:
  static void check_rank(const char* op, const char* role, int r) {
    if (r != 0)
      detail::fail("redist::self_communicator::", op, ": ", role, " ", r, " is not 0, the only rank");
  }

  static void check_count(const char* op, std::size_t sent, std::size_t room) {
    if (sent != room) {
      detail::fail("redist::self_communicator::", op, ": ", sent, " bytes are sent but the receive expects ",
                   room);
    }
  }

  static void check_message(const char* op, int tag, std::size_t sent, std::size_t expected) {
    if (sent != expected) {
      detail::fail("redist::self_communicator::", op, ": a message of ", sent, " bytes with tag ", tag,
                   " where ", expected, " bytes were expected");
    }
  }

  // Receives the oldest held message with this tag, if any.
  bool take(std::span<std::byte> buf, int tag) const {
    const auto it = std::find_if(held_.begin(), held_.end(), [&](const auto& m) { return m.first == tag; });
    if (it == held_.end()) return false;
    check_message("recv", tag, it->second.size(), buf.size());
    host_space::copy(buf.data(), it->second.data(), it->second.size());
    held_.erase(it);
    return true;
  }

  mutable std::deque<std::pair<int, std::vector<std::byte>>> held_;       // sent, not yet received
  mutable std::deque<std::shared_ptr<detail::self_posted_recv>> posted_;  // irecvs no send has matched
};

static_assert(communicator<self_communicator>);

}  // namespace redist
