// Tests of redist::self_communicator: every operation of the communicator interface on one process, byte for
// byte, messages to itself matched by tag in order, and the errors MPI would report (or hang on) instead.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/comm/self.hpp"
#include "redist/staging/exchange.hpp"

namespace {

using redist::self_communicator;
using bytes = std::vector<std::byte>;
using sizes = std::vector<std::size_t>;

constexpr std::byte untouched{0xEE};

bytes numbered(std::size_t n, int start) {
  bytes b(n);
  for (std::size_t i = 0; i < n; ++i)
    b[i] = static_cast<std::byte>((static_cast<std::size_t>(start) + 3 * i) & 0xFF);
  return b;
}

static_assert(redist::communicator<self_communicator>);

}  // namespace

TEST_CASE("rank, size, groups of a single process") {
  const self_communicator c;
  CHECK(c.rank() == 0);
  CHECK(c.size() == 1);
  CHECK(c.group(std::vector<int>{0}) == &c);
  CHECK(c.group(std::vector<int>{}) == nullptr);
  CHECK(c.group(std::vector<int>{0})->group(std::vector<int>{0}) == &c);
  CHECK_THROWS_WITH_AS(
      c.group(std::vector<int>{1}),
      "redist::self_communicator::group: rank 1 is out of range for a communicator of size 1", redist::error);
  CHECK_THROWS_WITH_AS(c.group(std::vector<int>{0, 0}), doctest::Contains("rank 0 appears more than once"),
                       redist::error);
  const std::vector<int> ranks{4, 2, 7};
  CHECK(redist::group_rank(ranks, 7) == 2);
  CHECK(redist::group_rank(ranks, 3) == -1);
  CHECK(self_communicator::group_rank(ranks, 4) == 0);
}

TEST_CASE("collectives copy from this rank to itself") {
  const self_communicator c;
  const bytes data = numbered(10, 1);

  bytes buf = data;
  c.broadcast(buf, 0);
  CHECK(buf == data);
  CHECK_THROWS_AS(c.broadcast(buf, 1), redist::error);

  // gatherv into the middle of a larger buffer: the rest is untouched.
  bytes recv(16, untouched);
  c.gatherv(data, recv, sizes{10}, sizes{4}, 0);
  bytes want(16, untouched);
  std::copy(data.begin(), data.end(), want.begin() + 4);
  CHECK(recv == want);
  CHECK_THROWS_WITH_AS(c.gatherv(data, recv, sizes{9}, sizes{4}, 0), doctest::Contains("9 bytes are sent"),
                       redist::error);
  CHECK_THROWS_WITH_AS(c.gatherv(data, recv, sizes{10}, sizes{7}, 0),
                       doctest::Contains("exceeds the buffer of 16"), redist::error);
  CHECK_THROWS_AS(c.gatherv(data, recv, sizes{10}, sizes{4}, 1), redist::error);

  bytes part(6, untouched);
  c.scatterv(data, sizes{6}, sizes{3}, part, 0);
  CHECK(part == bytes(data.begin() + 3, data.begin() + 9));
  CHECK_THROWS_AS(c.scatterv(data, sizes{5}, sizes{3}, part, 0), redist::error);
  CHECK_THROWS_AS(c.scatterv(data, sizes{6}, sizes{3, 0}, part, 0), redist::error);

  bytes all(12, untouched);
  c.alltoallv(data, sizes{4}, sizes{5}, all, sizes{4}, sizes{8});
  want.assign(12, untouched);
  std::copy(data.begin() + 5, data.begin() + 9, want.begin() + 8);
  CHECK(all == want);
  CHECK_THROWS_AS(c.alltoallv(data, sizes{4}, sizes{5}, all, sizes{3}, sizes{8}), redist::error);

  bytes block(10, untouched);
  c.alltoall(data, block, 10);
  CHECK(block == data);
  CHECK_THROWS_WITH_AS(c.alltoall(data, block, 4), doctest::Contains("expected 1 block of 4 bytes"),
                       redist::error);

  sizes counts;
  CHECK(redist::allgatherv(c, data, &counts) == data);
  CHECK(counts == sizes{10});
  CHECK(redist::allgatherv(c, {}).empty());

  CHECK(c.allreduce_max(7) == 7);
  CHECK(c.allreduce_min(7) == 7);
  CHECK(c.allreduce_min_max(7) == std::pair<std::uint64_t, std::uint64_t>{7, 7});
  CHECK(c.allreduce_sum(std::uint64_t{1} << 50) == std::uint64_t{1} << 50);
  c.barrier();

  // Empty everything.
  c.gatherv({}, {}, sizes{0}, sizes{0}, 0);
  c.scatterv({}, sizes{0}, sizes{0}, {}, 0);
  c.alltoall({}, {}, 0);
}

// exchange_segments, or a segment_exchange (complete when it is made, on one process) and its wait.
template <class Send, class Recv>
void segments(bool nonblocking, const self_communicator& c, const Send& send, const Recv& recv) {
  if (!nonblocking) return redist::detail::exchange_segments(c, send, recv);
  redist::detail::segment_exchange<self_communicator> x(c, send, recv);
  CHECK_FALSE(x.pending());
  x.wait();
}

TEST_CASE("the segment exchange streams a rank's pieces to itself, cut differently on both sides") {
  for (const bool nonblocking : {false, true}) {
    INFO((nonblocking ? "segment_exchange" : "exchange_segments"));
    const self_communicator c;
    const bytes data = numbered(23, 5);
    // Send: pieces of 2, 0, 5 and 16 bytes from scattered places of one buffer, in this order.
    bytes source(50, untouched);
    const std::size_t at[] = {40, 0, 10, 20};
    const std::size_t len[] = {2, 0, 5, 16};
    std::vector<std::vector<redist::const_segment>> send(1);
    std::size_t offset = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(offset), len[i],
                  source.begin() + static_cast<std::ptrdiff_t>(at[i]));
      send[0].push_back({source.data() + at[i], len[i]});
      offset += len[i];
    }
    // Receive: pieces of 11, 0 and 12 bytes, the first at the end of the buffer.
    bytes target(30, untouched);
    std::vector<std::vector<redist::segment>> recv(1);
    recv[0] = {{target.data() + 19, 11}, {target.data(), 0}, {target.data() + 2, 12}};
    segments(nonblocking, c, send, recv);
    bytes want(30, untouched);
    std::copy_n(data.begin(), 11, want.begin() + 19);
    std::copy_n(data.begin() + 11, 12, want.begin() + 2);
    CHECK(target == want);

    recv[0].pop_back();
    CHECK_THROWS_WITH_AS(segments(nonblocking, c, send, recv),
                         "redist::exchange_segments: rank 0 sends itself 23 bytes but expects 11",
                         redist::error);
    const std::vector<std::vector<redist::const_segment>> none;
    CHECK_THROWS_WITH_AS(
        segments(nonblocking, c, none, recv),
        "redist::exchange_segments: 0 send and 1 receive piece lists, expected one per rank (1)",
        redist::error);
    std::vector<std::vector<redist::const_segment>> nothing(1);
    std::vector<std::vector<redist::segment>> nowhere(1);
    segments(nonblocking, c, nothing, nowhere);
  }
}

TEST_CASE("messages to itself match by tag, in order; an unmatched receive throws instead of hanging") {
  const self_communicator c;
  const bytes a = numbered(4, 1);
  const bytes b = numbered(6, 2);
  const bytes d = numbered(4, 3);
  c.send(a, 0, 1);
  c.send(b, 0, 2);
  c.send(d, 0, 1);
  bytes got4(4);
  bytes got6(6);
  c.recv(got6, 0, 2);
  CHECK(got6 == b);
  c.recv(got4, 0, 1);
  CHECK(got4 == a);  // the first message with tag 1 first
  c.recv(got4, 0, 1);
  CHECK(got4 == d);
  CHECK_THROWS_WITH_AS(c.recv(got4, 0, 1), doctest::Contains("no message with tag 1"), redist::error);
  c.send(a, 0, 9);
  CHECK_THROWS_WITH_AS(c.recv(got6, 0, 9), doctest::Contains("a message of 4 bytes with tag 9 where 6 bytes"),
                       redist::error);
  CHECK_THROWS_AS(c.send(a, 1, 0), redist::error);
  CHECK_THROWS_AS(c.recv(got4, 1, 0), redist::error);
  c.send({}, 0, 4);
  c.recv({}, 0, 4);

  // A receive posted first is filled by the send.
  bytes into(6, untouched);
  self_communicator::request r = c.irecv(into, 0, 5);
  CHECK(r.pending());
  self_communicator::request s = c.isend(b, 0, 5);
  CHECK_FALSE(s.pending());
  CHECK_FALSE(r.pending());
  std::vector<self_communicator::request> both;
  both.push_back(std::move(r));
  both.push_back(std::move(s));
  redist::wait_all(both);
  CHECK(into == b);

  // A send posted first is held for the receive.
  bytes late(4, untouched);
  c.isend(d, 0, 6).wait();
  c.irecv(late, 0, 6).wait();
  CHECK(late == d);

  // Never matched: wait throws; destroyed pending, it withdraws, so a later send is held instead of written.
  bytes lost(4, untouched);
  self_communicator::request never = c.irecv(lost, 0, 7);
  CHECK_THROWS_WITH_AS(never.wait(), doctest::Contains("no send matched the irecv with tag 7"),
                       redist::error);
  never = self_communicator::request();
  c.send(a, 0, 7);
  CHECK(lost == bytes(4, untouched));
  c.recv(got4, 0, 7);
  CHECK(got4 == a);

  bytes small(3);
  self_communicator::request wrong = c.irecv(small, 0, 8);
  CHECK_THROWS_AS(c.send(a, 0, 8), redist::error);
  bytes buf = a;
  c.ibroadcast(buf, 0).wait();
  CHECK(buf == a);
}

TEST_CASE("self_communicator moves") {
  self_communicator c;
  const bytes a = numbered(4, 1);
  c.send(a, 0, 1);
  self_communicator moved = std::move(c);
  bytes got(4);
  moved.recv(got, 0, 1);
  CHECK(got == a);
}
