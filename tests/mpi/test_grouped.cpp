// MPI tests of the v-collectives written over the point-to-point group (redist::grouped), the code the NCCL
// backend runs: each is compared byte for byte with MPI's own collective (MPI_Alltoallv, MPI_Gatherv,
// MPI_Scatterv, MPI_Bcast on a sub-communicator) on the same communicator, with seeded counts of which some
// are zero, blocks placed backwards with gaps, every root, on the world, a communicator numbered backwards,
// the odd ranks and a permuted sub-group; several groups in flight at once; bad arguments.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "redist/comm/grouped.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/comm/self.hpp"

namespace {

using redist::mpi_communicator;
using bytes = std::vector<std::byte>;
using sizes = std::vector<std::size_t>;
using redist::test::all_ranks;
using redist::test::draw;

constexpr std::byte untouched{0xEE};

std::byte pattern(std::uint64_t seed, std::size_t from, std::size_t to, std::size_t i) {
  return static_cast<std::byte>(draw(seed ^ 0x9e37, from, to, i) & 0xFF);
}

// Bytes from rank `from` to rank `to`: a quarter of the pairs none, the rest up to 300.
std::size_t count(std::uint64_t seed, std::size_t from, std::size_t to) {
  const std::uint64_t d = draw(seed ^ 0x51, from, to, 0);
  return d % 4 == 0 ? 0 : (d >> 8) % 300;
}

// Blocks placed last rank first, 3 bytes apart.
sizes place(const sizes& counts, std::size_t& total) {
  sizes displs(counts.size());
  total = 0;
  for (std::size_t k = counts.size(); k-- > 0;) {
    displs[k] = total;
    total += counts[k] + 3;
  }
  return displs;
}

std::vector<int> ints(const sizes& v) { return {v.begin(), v.end()}; }

// One alltoallv of seeded blocks, grouped and by MPI_Alltoallv on the same communicator: the same bytes.
bool alltoallv_matches(const mpi_communicator& c, std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  sizes sc(n), rc(n);
  for (std::size_t p = 0; p < n; ++p) {
    sc[p] = count(seed, me, p);
    rc[p] = count(seed, p, me);
  }
  std::size_t st = 0, rt = 0;
  const sizes sd = place(sc, st), rd = place(rc, rt);
  bytes send(st, untouched);
  for (std::size_t p = 0; p < n; ++p)
    for (std::size_t i = 0; i < sc[p]; ++i) send[sd[p] + i] = pattern(seed, me, p, i);
  bytes got(rt, untouched), want(rt, untouched);
  redist::grouped::alltoallv(c, send, sc, sd, got, rc, rd);
  MPI_Alltoallv(send.data(), ints(sc).data(), ints(sd).data(), MPI_BYTE, want.data(), ints(rc).data(),
                ints(rd).data(), MPI_BYTE, c.native());
  return got == want;
}

// gatherv and scatterv from `root` against MPI_Gatherv and MPI_Scatterv.
bool gather_scatter_match(const mpi_communicator& c, std::uint64_t seed, int root) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  const auto r = static_cast<std::size_t>(root);
  sizes counts(n);
  for (std::size_t p = 0; p < n; ++p) counts[p] = count(seed, p, r);
  std::size_t total = 0;
  const sizes displs = place(counts, total);
  bytes mine(counts[me]);
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = pattern(seed, me, r, i);
  const bool is_root = c.rank() == root;
  bytes got(is_root ? total : 0, untouched), want(is_root ? total : 0, untouched);
  redist::grouped::igatherv(c, mine, got, counts, displs, root).wait();
  MPI_Gatherv(mine.data(), static_cast<int>(mine.size()), MPI_BYTE, want.data(), ints(counts).data(),
              ints(displs).data(), MPI_BYTE, root, c.native());
  bool ok = got == want;
  // Scatter back what was gathered, from root's buffer.
  bytes back(counts[me], untouched), back_want(counts[me], untouched);
  redist::grouped::iscatterv(c, want, counts, displs, back, root).wait();
  MPI_Scatterv(want.data(), ints(counts).data(), ints(displs).data(), MPI_BYTE, back_want.data(),
               static_cast<int>(back_want.size()), MPI_BYTE, root, c.native());
  return ok && back == back_want && back == mine;
}

// A broadcast from root to a subset (every third rank and the last), against MPI_Bcast on a communicator of
// exactly root and those members.
bool subset_broadcast_matches(const mpi_communicator& c, std::uint64_t seed, int root) {
  const int n = c.size();
  std::vector<int> members;
  for (int p = 0; p < n; ++p)
    if (p % 3 == 1 || p == n - 1) members.push_back(p);
  const bool in = c.rank() == root || redist::group_rank(members, c.rank()) >= 0;
  const std::size_t size = count(seed, static_cast<std::size_t>(root), 7) + 1;
  bytes got(size, untouched);
  if (c.rank() == root)
    for (std::size_t i = 0; i < size; ++i) got[i] = pattern(seed, 1, 2, i);
  bytes want = c.rank() == root ? got : bytes(size, untouched);
  redist::grouped::ibroadcast(c, got, root, members).wait();
  MPI_Comm sub = MPI_COMM_NULL;
  MPI_Comm_split(c.native(), in ? 0 : MPI_UNDEFINED, c.rank(), &sub);
  if (!in) return got == bytes(size, untouched);  // not a member: untouched
  int sub_root = 0;
  MPI_Group whole, part;
  MPI_Comm_group(c.native(), &whole);
  MPI_Comm_group(sub, &part);
  MPI_Group_translate_ranks(whole, 1, &root, part, &sub_root);
  MPI_Bcast(want.data(), static_cast<int>(size), MPI_BYTE, sub_root, sub);
  MPI_Group_free(&whole);
  MPI_Group_free(&part);
  MPI_Comm_free(&sub);
  return got == want;
}

void check_all(const mpi_communicator& c, std::uint64_t seed, const char* label) {
  INFO(label << " of " << c.size() << " ranks");
  for (std::uint64_t round = 0; round < 3; ++round)
    CHECK(all_ranks(alltoallv_matches(c, seed + round), c.native()));
  for (int root = 0; root < c.size(); ++root) {
    CHECK(all_ranks(gather_scatter_match(c, seed + 10, root), c.native()));
    CHECK(all_ranks(subset_broadcast_matches(c, seed + 20, root), c.native()));
  }
}

}  // namespace

TEST_CASE(
    "grouped collectives match MPI's byte for byte on the world, backwards, the odd ranks, a sub-group") {
  REDIST_AGREED_SEED(seed);
  const mpi_communicator world(MPI_COMM_WORLD);
  check_all(world, seed, "the world");
  const auto reversed = redist::test::reversed_world();
  check_all(mpi_communicator(reversed.get()), seed, "the world numbered backwards");
  const auto odd = redist::test::odd_ranks();
  if (odd.is_member()) check_all(mpi_communicator(odd.get()), seed, "the odd ranks");
  // A cached sub-group of every rank but 0, numbered backwards: its rank i is ranks[i].
  std::vector<int> ranks;
  for (int r = world.size() - 1; r >= 1; --r) ranks.push_back(r);
  if (!ranks.empty())
    if (const mpi_communicator* sub = world.group(ranks)) check_all(*sub, seed, "a permuted sub-group");
}

TEST_CASE("several groups in flight between the same ranks complete in any order, each with its own bytes") {
  REDIST_AGREED_SEED(seed);
  const mpi_communicator c(MPI_COMM_WORLD);
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  constexpr std::size_t rounds = 4;
  std::vector<bytes> sends(rounds), gots(rounds);
  std::vector<sizes> sc(rounds, sizes(n)), sd(rounds), rc(rounds, sizes(n)), rd(rounds);
  std::vector<mpi_communicator::request> started;
  for (std::size_t k = 0; k < rounds; ++k) {
    for (std::size_t p = 0; p < n; ++p) {
      sc[k][p] = count(seed + k, me, p);
      rc[k][p] = count(seed + k, p, me);
    }
    std::size_t st = 0, rt = 0;
    sd[k] = place(sc[k], st);
    rd[k] = place(rc[k], rt);
    sends[k].assign(st, untouched);
    for (std::size_t p = 0; p < n; ++p)
      for (std::size_t i = 0; i < sc[k][p]; ++i) sends[k][sd[k][p] + i] = pattern(seed + k, me, p, i);
    gots[k].assign(rt, untouched);
    started.push_back(redist::grouped::ialltoallv(c, sends[k], sc[k], sd[k], gots[k], rc[k], rd[k]));
  }
  for (std::size_t k = rounds; k-- > 0;) started[k].wait();
  bool ok = true;
  for (std::size_t k = 0; k < rounds; ++k)
    for (std::size_t p = 0; p < n; ++p)
      for (std::size_t i = 0; i < rc[k][p]; ++i)
        ok = ok && gots[k][rd[k][p] + i] == pattern(seed + k, p, me, i);
  CHECK(all_ranks(ok));
}

TEST_CASE("grouped collectives: bad arguments throw before anything is posted; one process") {
  const mpi_communicator c(MPI_COMM_WORLD);
  const sizes zeros(static_cast<std::size_t>(c.size()), 0);
  bytes buf(4);
  const sizes too_many(static_cast<std::size_t>(c.size()) + 1, 0);
  CHECK_THROWS_WITH_AS(redist::grouped::alltoallv(c, buf, too_many, too_many, buf, zeros, zeros),
                       doctest::Contains("expected one per rank"), redist::error);
  const std::string out_of_range = "root " + std::to_string(c.size()) + " is out of range";
  CHECK_THROWS_WITH_AS((void)redist::grouped::igatherv(c, buf, buf, zeros, zeros, c.size()),
                       doctest::Contains(out_of_range.c_str()), redist::error);
  const std::vector<int> twice{0, 0};
  CHECK_THROWS_WITH_AS((void)redist::grouped::ibroadcast(c, buf, 0, twice),
                       doctest::Contains("appears more than once"), redist::error);
  // On one process the group copies each send into its receive when it finishes.
  const redist::self_communicator self;
  bytes a{std::byte{1}, std::byte{2}, std::byte{3}}, b(3);
  redist::grouped::alltoallv(self, a, sizes{3}, sizes{0}, b, sizes{3}, sizes{0});
  CHECK(a == b);
  CHECK_THROWS_WITH_AS(redist::grouped::alltoallv(self, a, sizes{3}, sizes{0}, b, sizes{2}, sizes{0}),
                       "redist::grouped::alltoallv: rank 0 sends itself 3 bytes but expects 2",
                       redist::error);
  auto g = self.start_group();
  g.send(a, 0);
  CHECK_THROWS_WITH_AS((void)std::move(g).finish(), doctest::Contains("posts 1 sends and 0 receives"),
                       redist::error);
}

TEST_CASE(
    "recv_pieces: one message from each peer spread over pieces, also across chunks of a lowered size") {
  REDIST_AGREED_SEED(seed);
  const mpi_communicator c(MPI_COMM_WORLD);
  const int n = c.size();
  const auto me = static_cast<std::size_t>(c.rank());
  for (const std::size_t limit : {std::size_t{0}, std::size_t{7}}) {
    std::optional<redist::test::scoped_max_count> lowered;
    if (limit != 0) lowered.emplace(limit);
    INFO("chunk limit " << (limit == 0 ? std::string("none") : std::to_string(limit)));
    // Every rank sends every other rank 40 bytes as one block; the receiver spreads them over pieces of 5, 0,
    // 20 and 15 bytes placed backwards with gaps.
    std::vector<bytes> sends(static_cast<std::size_t>(n)), gots(static_cast<std::size_t>(n));
    auto g = c.start_group();
    std::vector<std::vector<redist::segment>> pieces(static_cast<std::size_t>(n));
    for (int k = 1; k < n; ++k) {
      const auto to = (me + static_cast<std::size_t>(k)) % static_cast<std::size_t>(n);
      const auto from = (me + static_cast<std::size_t>(n - k)) % static_cast<std::size_t>(n);
      sends[to].resize(40);
      for (std::size_t i = 0; i < 40; ++i) sends[to][i] = pattern(seed, me, to, i);
      g.send(sends[to], static_cast<int>(to));
      bytes& got = gots[from];
      got.assign(50, untouched);
      pieces[from] = {{got.data() + 40, 5}, {got.data(), 0}, {got.data() + 18, 20}, {got.data() + 1, 15}};
      g.recv_pieces(pieces[from], static_cast<int>(from));
    }
    std::move(g).finish().wait();
    bool ok = true;
    for (int p = 0; p < n; ++p) {
      if (static_cast<std::size_t>(p) == me) continue;
      std::size_t i = 0;
      for (const auto& s : pieces[static_cast<std::size_t>(p)])
        for (std::size_t k = 0; k < s.bytes; ++k)
          ok = ok && s.data[k] == pattern(seed, static_cast<std::size_t>(p), me, i++);
      ok = ok && gots[static_cast<std::size_t>(p)][0] == untouched &&
           gots[static_cast<std::size_t>(p)][16] == untouched;
    }
    CHECK(all_ranks(ok));
  }
}
