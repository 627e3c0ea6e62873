// MPI tests of the nonblocking all-to-alls, mpi_communicator::ialltoallv and the segment exchange over the
// point-to-point group (and self_communicator's): byte for byte against what this file computes on its own,
// with uneven counts, empty blocks, gaps and blocks placed backwards, pieces cut differently on the two sides
// (some empty, some adjacent) and placed shuffled, on the world, a communicator numbered backwards, a split
// subset and sub-groups; several in flight at once; the caller's count arrays and piece lists reused before
// the wait; moved and destroyed pending requests; the datatype path (chunk size lowered to 7 bytes); bad
// arguments.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/comm/self.hpp"
#include "redist/staging/exchange.hpp"

namespace {

using redist::mpi_communicator;
using bytes = std::vector<std::byte>;
using sizes = std::vector<std::size_t>;

constexpr std::byte untouched{0xEE};  // receive buffers start with it: gaps must keep it

using redist::test::draw;
using redist::test::mix;
using redist::test::odd_ranks_of;
using redist::test::scoped_max_count;

// Byte i of what rank `from` sends rank `to` in exchange `round`.
std::byte pattern(std::uint64_t seed, std::size_t round, std::size_t from, std::size_t to, std::size_t i) {
  return static_cast<std::byte>(draw(seed ^ (round << 40), from, to, i) & 0xFF);
}

// Bytes from rank `from` to rank `to`: some pairs none, the rest up to max - 1.
std::size_t count(std::uint64_t seed, std::size_t round, std::size_t from, std::size_t to, std::size_t max) {
  const std::uint64_t d = draw(seed ^ 0x51, round, from, to);
  return d % 4 == 0 ? 0 : (d >> 8) % max;
}

// Blocks placed in `order` with `gap` bytes after each.
sizes place(const sizes& counts, bool backwards, std::size_t gap, std::size_t& total) {
  sizes displs(counts.size());
  total = 0;
  for (std::size_t k = 0; k < counts.size(); ++k) {
    const std::size_t p = backwards ? counts.size() - 1 - k : k;
    displs[p] = total;
    total += counts[p] + gap;
  }
  return displs;
}

std::string first_difference(std::span<const std::byte> got, std::span<const std::byte> want) {
  if (got.size() != want.size())
    return std::to_string(got.size()) + " bytes, expected " + std::to_string(want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      return "byte " + std::to_string(i) + " is " + std::to_string(static_cast<int>(got[i])) + ", expected " +
             std::to_string(static_cast<int>(want[i]));
    }
  }
  return {};
}

// Completes requests[k] (exchange xs[k]'s) last first, each waited on twice (the second wait does nothing),
// then checks every exchange's receive buffer: the order of completion must not matter.
template <class Request, class Exchange>
void wait_in_reverse_and_check(std::vector<Request>& requests, const std::vector<Exchange>& xs) {
  for (std::size_t k = requests.size(); k-- > 0;) {
    requests[k].wait();
    CHECK_FALSE(requests[k].pending());
    requests[k].wait();  // again: nothing
  }
  for (std::size_t round = 0; round < xs.size(); ++round) {
    const std::string problem = first_difference(xs[round].recv, xs[round].want);
    CHECK_MESSAGE(problem.empty(), "round ", round, ": ", problem);
  }
}

// One exchange's buffers and layout on this rank, and the receive buffer it must end with.
struct exchange {
  sizes send_counts, send_displs, recv_counts, recv_displs;
  bytes send, recv, want;
};

exchange make_exchange(std::uint64_t seed, std::size_t round, std::size_t me, std::size_t n,
                       std::size_t max) {
  exchange x;
  for (std::size_t p = 0; p < n; ++p) {
    x.send_counts.push_back(count(seed, round, me, p, max));
    x.recv_counts.push_back(count(seed, round, p, me, max));
  }
  std::size_t send_total = 0;
  std::size_t recv_total = 0;
  x.send_displs = place(x.send_counts, round % 2 == 0, 3, send_total);
  x.recv_displs = place(x.recv_counts, round % 3 == 0, 1 + round % 2, recv_total);
  x.send.assign(send_total, std::byte{0xAA});
  x.recv.assign(recv_total, untouched);
  x.want.assign(recv_total, untouched);
  for (std::size_t p = 0; p < n; ++p) {
    for (std::size_t i = 0; i < x.send_counts[p]; ++i)
      x.send[x.send_displs[p] + i] = pattern(seed, round, me, p, i);
    for (std::size_t i = 0; i < x.recv_counts[p]; ++i)
      x.want[x.recv_displs[p] + i] = pattern(seed, round, p, me, i);
  }
  return x;
}

template <class Comm>
auto start(const Comm& c, exchange& x) {
  return c.ialltoallv(x.send, x.send_counts, x.send_displs, x.recv, x.recv_counts, x.recv_displs);
}

// Several exchanges in flight at once on one communicator, completed in reverse order; the caller's count
// and displacement arrays are overwritten right after each start (the request keeps its own copies).
template <class Comm>
void check_exchanges(const Comm& c, std::uint64_t seed, std::size_t max) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  INFO("communicator of size " << n << ", rank " << me << ", blocks under " << max << " bytes");
  constexpr std::size_t rounds = 4;
  std::vector<exchange> xs;
  for (std::size_t round = 0; round < rounds; ++round) xs.push_back(make_exchange(seed, round, me, n, max));
  using request = decltype(start(c, xs[0]));
  std::vector<request> requests;
  for (exchange& x : xs) {
    requests.push_back(start(c, x));
    if constexpr (!std::is_same_v<Comm, mpi_communicator>)
      CHECK_FALSE(requests.back().pending());  // complete
    std::fill(x.send_counts.begin(), x.send_counts.end(), 12345);
    std::fill(x.recv_displs.begin(), x.recv_displs.end(), 999);
  }
  wait_in_reverse_and_check(requests, xs);
}

// A moved request completes through its new owner; a request destroyed pending completes first, so its
// receive buffer is whole once it is gone.
void check_moves(const mpi_communicator& c, std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  exchange a = make_exchange(seed, 10, me, n, 50);
  exchange b = make_exchange(seed, 11, me, n, 50);
  auto ra = start(c, a);
  auto moved = std::move(ra);
  CHECK_FALSE(ra.pending());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  ra.wait();                  // NOLINT(bugprone-use-after-move): nothing to wait for
  {
    auto rb = start(c, b);
    moved = std::move(rb);  // waits for a first
    CHECK(first_difference(a.recv, a.want).empty());
  }
  moved.wait();
  CHECK(first_difference(b.recv, b.want).empty());
  exchange d = make_exchange(seed, 12, me, n, 50);
  { auto rd = start(c, d); }  // destroyed pending
  CHECK(first_difference(d.recv, d.want).empty());
}

// Nothing to move anywhere: counts all 0, empty buffers.
template <class Comm>
void check_empty(const Comm& c) {
  const sizes zeros(static_cast<std::size_t>(c.size()), 0);
  auto r = c.ialltoallv({}, zeros, zeros, {}, zeros, zeros);
  r.wait();
  CHECK_FALSE(r.pending());
}

// ---- segment exchanges (staging/exchange.hpp) ----

// A segment exchange in flight, held where a test keeps requests.
template <class Comm>
struct in_flight {
  std::unique_ptr<redist::detail::segment_exchange<Comm>> x;
  bool pending() const { return x->pending(); }
  void wait() { x->wait(); }
};

// The sizes of the pieces `total` bytes are cut into: 0 to 4 pieces (at least one when total > 0), some
// empty.
sizes cut(std::uint64_t d, std::size_t total, std::size_t max_pieces) {
  std::size_t k = d % (max_pieces + 1);
  if (total > 0 && k == 0) k = 1;
  sizes out;
  std::size_t left = total;
  for (std::size_t j = 0; j + 1 < k; ++j) {
    const std::uint64_t e = mix(d ^ j);
    const std::size_t n = e % 3 == 0 ? 0 : (e >> 8) % (left + 1);
    out.push_back(n);
    left -= n;
  }
  if (k > 0) out.push_back(left);
  return out;
}

// One side's pieces in one buffer: every piece of every peer, in an order shuffled by `d`, `gap` bytes apart
// (0: adjacent pieces, which the datatype merges).
template <class Segment, class Byte>
std::vector<std::vector<Segment>> place_pieces(const std::vector<sizes>& cuts, std::uint64_t d,
                                               std::size_t gap, std::vector<Byte>& buffer) {
  std::vector<std::pair<std::uint64_t, std::pair<std::size_t, std::size_t>>> order;  // (key, (peer, piece))
  std::size_t total = 0;
  for (std::size_t p = 0; p < cuts.size(); ++p) {
    for (std::size_t j = 0; j < cuts[p].size(); ++j) {
      order.push_back({mix(d ^ (p << 8) ^ j), {p, j}});
      total += cuts[p][j] + gap;
    }
  }
  std::sort(order.begin(), order.end());
  buffer.assign(total, untouched);
  std::vector<sizes> offsets(cuts.size());
  for (std::size_t p = 0; p < cuts.size(); ++p) offsets[p].resize(cuts[p].size());
  std::size_t at = 0;
  for (const auto& [key, where] : order) {
    offsets[where.first][where.second] = at;
    at += cuts[where.first][where.second] + gap;
  }
  std::vector<std::vector<Segment>> pieces(cuts.size());
  for (std::size_t p = 0; p < cuts.size(); ++p) {
    for (std::size_t j = 0; j < cuts[p].size(); ++j)
      pieces[p].push_back({buffer.data() + offsets[p][j], cuts[p][j]});
  }
  return pieces;
}

// One segment exchange on this rank: rank `from` sends rank `to` count(...) bytes, cut one way on the send
// side and another on the receive side; want is the receive buffer it must end with.
struct segment_case {
  bytes send, recv, want;
  std::vector<std::vector<redist::const_segment>> send_pieces;
  std::vector<std::vector<redist::segment>> recv_pieces;
};

segment_case make_segment_exchange(std::uint64_t seed, std::size_t round, std::size_t me, std::size_t n,
                                   std::size_t max, std::size_t max_pieces) {
  segment_case x;
  std::vector<sizes> send_cuts(n), recv_cuts(n);
  for (std::size_t p = 0; p < n; ++p) {
    send_cuts[p] = cut(draw(seed ^ 0x5E, round, me, p), count(seed, round, me, p, max), max_pieces);
    recv_cuts[p] = cut(draw(seed ^ 0x4EC, round, p, me), count(seed, round, p, me, max), max_pieces);
  }
  const std::size_t gap = round % 3;
  x.send_pieces = place_pieces<redist::const_segment>(send_cuts, draw(seed, round, me, 1), gap, x.send);
  x.recv_pieces = place_pieces<redist::segment>(recv_cuts, draw(seed, round, me, 2), gap, x.recv);
  x.want = x.recv;
  for (std::size_t p = 0; p < n; ++p) {
    std::size_t i = 0;  // byte i of what p sends this rank, in piece order
    for (const redist::segment& s : x.recv_pieces[p]) {
      const auto offset = static_cast<std::size_t>(s.data - x.recv.data());
      for (std::size_t k = 0; k < s.bytes; ++k) x.want[offset + k] = pattern(seed, round, p, me, i++);
    }
    i = 0;
    for (const redist::const_segment& s : x.send_pieces[p]) {
      const auto offset = static_cast<std::size_t>(s.data - x.send.data());
      for (std::size_t k = 0; k < s.bytes; ++k) x.send[offset + k] = pattern(seed, round, me, p, i++);
    }
  }
  return x;
}

// Several segment exchanges in flight at once, completed in reverse order; the caller's piece lists are
// cleared right after each start (the request keeps what it needs).
template <class Comm>
void check_segments(const Comm& c, std::uint64_t seed, std::size_t max, std::size_t max_pieces) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  INFO("communicator of size " << n << ", rank " << me << ", blocks under " << max << " bytes, up to "
                               << max_pieces << " pieces");
  constexpr std::size_t rounds = 4;
  std::vector<segment_case> xs;
  for (std::size_t round = 0; round < rounds; ++round)
    xs.push_back(make_segment_exchange(seed, round, me, n, max, max_pieces));
  std::vector<in_flight<Comm>> requests;
  for (segment_case& x : xs) {
    requests.push_back(
        {std::make_unique<redist::detail::segment_exchange<Comm>>(c, x.send_pieces, x.recv_pieces)});
    if constexpr (!std::is_same_v<Comm, mpi_communicator>)
      CHECK_FALSE(requests.back().pending());  // complete
    for (auto& l : x.send_pieces) l.clear();
    for (auto& l : x.recv_pieces) l.clear();
  }
  wait_in_reverse_and_check(requests, xs);
}

// A segment exchange destroyed pending completes its transfers first (its unpacking is the wait's).
void check_segment_moves(const mpi_communicator& c, std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  segment_case a = make_segment_exchange(seed, 20, me, n, 50, 1);  // one piece per peer: nothing to unpack
  { redist::detail::segment_exchange<mpi_communicator> x(c, a.send_pieces, a.recv_pieces); }
  CHECK(first_difference(a.recv, a.want).empty());
}

void check_all(const mpi_communicator& c, std::uint64_t seed) {
  check_exchanges(c, seed, 60);
  check_moves(c, seed);
  check_empty(c);
  check_segments(c, seed ^ 0xA1, 60, 4);
  check_segments(c, seed ^ 0xA2, 60, 1);  // at most one piece per peer: nothing packed
  // Packing on rank 0 only, single pieces elsewhere: each side decides alone.
  check_segments(c, seed ^ 0xA4, 60, c.rank() == 0 ? 4 : 1);
  check_segment_moves(c, seed ^ 0xA3);
}

}  // namespace

// One request type for every nonblocking operation.
static_assert(std::is_same_v<decltype(std::declval<const mpi_communicator&>().ialltoallv(
                                 bytes{}, sizes{}, sizes{}, std::declval<bytes&>(), sizes{}, sizes{})),
                             mpi_communicator::request>);

TEST_CASE("ialltoallv on the world, several in flight, byte for byte") {
  REDIST_AGREED_SEED(seed);
  const mpi_communicator c(MPI_COMM_WORLD);
  check_all(c, seed);
  // Large blocks (eager and rendezvous sizes alike).
  check_exchanges(c, seed ^ 1, 300000);
  check_segments(c, seed ^ 12, 300000, 4);
}

TEST_CASE("ialltoallv on a communicator numbered backwards, a split subset and sub-groups") {
  REDIST_AGREED_SEED(seed);
  const auto reversed = redist::test::reversed_world();
  check_all(mpi_communicator(reversed.get()), seed ^ 2);
  const auto odd = redist::test::odd_ranks();
  if (odd.is_member()) check_all(mpi_communicator(odd.get()), seed ^ 3);
  const mpi_communicator c(MPI_COMM_WORLD);
  if (const mpi_communicator* g = c.group(odd_ranks_of(c.size()))) check_all(*g, seed ^ 4);
  std::vector<int> backwards(static_cast<std::size_t>(c.size()));
  std::iota(backwards.rbegin(), backwards.rend(), 0);
  const mpi_communicator* b = c.group(backwards);
  CHECK(b != nullptr);
  if (b != nullptr) check_all(*b, seed ^ 5);
}

TEST_CASE("ialltoallv through hindexed datatypes: the chunk size lowered to 7 bytes") {
  REDIST_AGREED_SEED(seed);
  const scoped_max_count small(7);
  const mpi_communicator c(MPI_COMM_WORLD);
  check_all(c, seed ^ 6);
  // Every block within 7 bytes of its side's lowest one only when blocks are tiny: the int-count path.
  check_exchanges(c, seed ^ 7, 2);
  const auto reversed = redist::test::reversed_world();
  check_all(mpi_communicator(reversed.get()), seed ^ 8);
}

TEST_CASE("ialltoallv on one process: self_communicator completes at once") {
  REDIST_AGREED_SEED(seed);
  const redist::self_communicator self;
  check_exchanges(self, seed ^ 9, 100);
  check_empty(self);
  check_segments(self, seed ^ 13, 100, 4);
  // The world's rank 0 alone, through MPI.
  const mpi_communicator c(MPI_COMM_WORLD);
  if (const mpi_communicator* alone = c.group(std::vector<int>{0})) check_all(*alone, seed ^ 10);
}

TEST_CASE(
    "ialltoallv, exchange_segments: bad arguments throw redist::error before anything starts, and the "
    "communicator works on") {
  REDIST_AGREED_SEED(seed);
  using doctest::Contains;
  const mpi_communicator c(MPI_COMM_WORLD);
  const auto n = static_cast<std::size_t>(c.size());
  bytes buf(10);
  const sizes ones(n, 1);
  const sizes zeros(n, 0);
  const sizes short_list(n - 1, 0);
  const sizes far(n, 10);
  const std::string short_message =
      "redist::mpi_communicator::ialltoallv: send has " + std::to_string(n - 1) + " counts";
  CHECK_THROWS_WITH_AS((void)c.ialltoallv(buf, short_list, zeros, buf, zeros, zeros),
                       Contains(short_message.c_str()), redist::error);
  CHECK_THROWS_WITH_AS(
      (void)c.ialltoallv(buf, zeros, zeros, buf, ones, far),
      Contains("redist::mpi_communicator::ialltoallv: recv block of rank 0 (1 bytes at offset 10) "
               "exceeds the buffer of 10 bytes"),
      redist::error);
  const redist::self_communicator self;
  CHECK_THROWS_WITH_AS((void)self.ialltoallv(buf, sizes{2}, sizes{0}, buf, sizes{3}, sizes{0}),
                       "redist::self_communicator::ialltoallv: 2 bytes are sent but the receive expects 3",
                       redist::error);
  const std::vector<std::vector<redist::const_segment>> no_send;
  const std::vector<std::vector<redist::segment>> no_recv;
  const std::string lists =
      "redist::exchange_segments: 0 send and 0 receive piece lists, expected one per rank (" +
      std::to_string(n) + ")";
  CHECK_THROWS_WITH_AS(redist::detail::exchange_segments(c, no_send, no_recv), lists.c_str(), redist::error);
  const std::vector<std::vector<redist::const_segment>> two{{{buf.data(), 2}}};
  const std::vector<std::vector<redist::segment>> three{{{buf.data() + 2, 3}}};
  CHECK_THROWS_WITH_AS(redist::detail::exchange_segments(self, two, three),
                       "redist::exchange_segments: rank 0 sends itself 2 bytes but expects 3", redist::error);
  check_exchanges(c, seed ^ 11, 40);
  check_segments(c, seed ^ 14, 40, 3);
}
