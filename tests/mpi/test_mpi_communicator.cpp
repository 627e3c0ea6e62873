// MPI tests of redist::mpi_communicator: every operation byte for byte against what this file computes on its
// own, on the world, on a communicator numbered backwards, on a split subset and on sub-groups; group()
// creation, order, caching and errors; chunking (a lowered chunk size everywhere, real 2 GiB at np = 2).
#include <doctest/doctest.h>
#include <mpi.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/staging/exchange.hpp"

namespace {

using redist::mpi_communicator;
using bytes = std::vector<std::byte>;
using sizes = std::vector<std::size_t>;

constexpr std::byte untouched{0xEE};  // receive buffers start with it: gaps must keep it

using redist::test::draw;
using redist::test::odd_ranks_of;
using redist::test::scoped_max_count;

// Byte i of the message from rank `from` to rank `to` (to = -1: to everyone).
std::byte pattern(std::uint64_t seed, int from, int to, std::size_t i) {
  return static_cast<std::byte>(
      draw(seed, static_cast<std::uint64_t>(from), static_cast<std::uint64_t>(to + 1), i) & 0xFF);
}

void fill(std::span<std::byte> out, std::uint64_t seed, int from, int to, std::size_t first = 0) {
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = pattern(seed, from, to, first + i);
}

void check_bytes(std::span<const std::byte> got, std::span<const std::byte> want, const std::string& what) {
  std::string problem;
  if (got.size() != want.size()) {
    problem = what + ": " + std::to_string(got.size()) + " bytes, expected " + std::to_string(want.size());
  } else {
    for (std::size_t i = 0; i < got.size() && problem.empty(); ++i) {
      if (got[i] != want[i]) {
        problem = what + ": byte " + std::to_string(i) + " is " + std::to_string(static_cast<int>(got[i])) +
                  ", expected " + std::to_string(static_cast<int>(want[i]));
      }
    }
  }
  CHECK_MESSAGE(problem.empty(), problem);
}

// Blocks of counts[p] bytes in a buffer, placed in the order `order` names with `gap` bytes between them.
sizes place(const sizes& counts, const std::vector<std::size_t>& order, std::size_t gap, std::size_t& total) {
  sizes displs(counts.size());
  total = 0;
  for (const std::size_t p : order) {
    displs[p] = total;
    total += counts[p] + gap;
  }
  return displs;
}

std::vector<std::size_t> forward(std::size_t n) {
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  return order;
}

std::vector<std::size_t> backward(std::size_t n) {
  std::vector<std::size_t> order = forward(n);
  std::reverse(order.begin(), order.end());
  return order;
}

// For each rank of comm, in order, its rank in MPI_COMM_WORLD.
std::vector<int> world_ranks_of(MPI_Comm comm) {
  MPI_Group group = MPI_GROUP_NULL;
  MPI_Group world_group = MPI_GROUP_NULL;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  int size = 0;
  MPI_Group_size(group, &size);
  std::vector<int> ranks(static_cast<std::size_t>(size));
  std::iota(ranks.begin(), ranks.end(), 0);
  std::vector<int> world_ranks(ranks.size());
  MPI_Group_translate_ranks(group, size, ranks.data(), world_group, world_ranks.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  return world_ranks;
}

// ---- one check per operation, on any communicator, with any number of ranks ----

void check_broadcast(const mpi_communicator& c, std::uint64_t seed) {
  for (int root = 0; root < c.size(); ++root) {
    for (const std::size_t length :
         {std::size_t{0}, std::size_t{1}, 1000 + 13 * static_cast<std::size_t>(root)}) {
      bytes want(length);
      fill(want, seed, root, -1);
      bytes buf = c.rank() == root ? want : bytes(length, untouched);
      c.broadcast(buf, root);
      check_bytes(buf, want, "broadcast from " + std::to_string(root));
    }
  }
}

// Uneven counts, one rank with none, blocks placed backwards with gaps.
sizes uneven_counts(std::uint64_t seed, int root, std::size_t n) {
  sizes counts(n);
  for (std::size_t p = 0; p < n; ++p) counts[p] = draw(seed, 1, static_cast<std::uint64_t>(root), p) % 40;
  if (n > 1) counts[(static_cast<std::size_t>(root) + 1) % n] = 0;
  return counts;
}

void check_gatherv(const mpi_communicator& c, std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  for (int root = 0; root < c.size(); ++root) {
    const sizes counts = uneven_counts(seed, root, n);
    std::size_t total = 0;
    const sizes displs = place(counts, backward(n), 3, total);
    bytes send(counts[me]);
    fill(send, seed, c.rank(), root);
    if (c.rank() == root) {
      bytes recv(total, untouched);
      bytes want(total, untouched);
      for (std::size_t p = 0; p < n; ++p) {
        fill(std::span(want).subspan(displs[p], counts[p]), seed, static_cast<int>(p), root);
      }
      c.gatherv(send, recv, counts, displs, root);
      check_bytes(recv, want, "gatherv to " + std::to_string(root));
    } else {
      c.gatherv(send, {}, {}, {}, root);  // recv, counts and displs matter on root only
    }
  }
}

void check_scatterv(const mpi_communicator& c, std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  for (int root = 0; root < c.size(); ++root) {
    const sizes counts = uneven_counts(seed ^ 5, root, n);
    std::size_t total = 0;
    const sizes displs = place(counts, backward(n), 2, total);
    bytes want(counts[me]);
    fill(want, seed, root, c.rank());
    bytes recv(counts[me], untouched);
    if (c.rank() == root) {
      bytes send(total, untouched);
      for (std::size_t p = 0; p < n; ++p) {
        fill(std::span(send).subspan(displs[p], counts[p]), seed, root, static_cast<int>(p));
      }
      c.scatterv(send, counts, displs, recv, root);
    } else {
      c.scatterv({}, {}, {}, recv, root);
    }
    check_bytes(recv, want, "scatterv from " + std::to_string(root));
  }
}

std::size_t alltoallv_count(std::uint64_t seed, std::size_t from, std::size_t to) {
  return (from + to) % 3 == 0 ? 0 : draw(seed, 2, from, to) % 60;
}

void check_alltoallv(const mpi_communicator& c, std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  sizes send_counts(n);
  sizes recv_counts(n);
  for (std::size_t p = 0; p < n; ++p) {
    send_counts[p] = alltoallv_count(seed, me, p);
    recv_counts[p] = alltoallv_count(seed, p, me);
  }
  std::size_t send_total = 0;
  std::size_t recv_total = 0;
  const sizes send_displs = place(send_counts, backward(n), 2, send_total);
  const sizes recv_displs = place(recv_counts, forward(n), 1, recv_total);
  bytes send(send_total, std::byte{0xAA});
  bytes recv(recv_total, untouched);
  bytes want(recv_total, untouched);
  for (std::size_t p = 0; p < n; ++p) {
    fill(std::span(send).subspan(send_displs[p], send_counts[p]), seed, c.rank(), static_cast<int>(p));
    fill(std::span(want).subspan(recv_displs[p], recv_counts[p]), seed, static_cast<int>(p), c.rank());
  }
  c.alltoallv(send, send_counts, send_displs, recv, recv_counts, recv_displs);
  check_bytes(recv, want, "alltoallv");
}

// The bytes rank `from` sends rank `to` in alltoall_segments (some peers none), cut into 0 to 4 pieces, some
// of them empty; `side` picks a different cut for the sender and the receiver.
sizes message_cut(std::uint64_t seed, std::size_t from, std::size_t to, std::uint64_t side) {
  const std::size_t total = (from * 7 + to) % 4 == 1 ? 0 : draw(seed, 3, from, to) % 100;
  const std::uint64_t key = draw(seed, 4 + side, from, to);
  if (total == 0 && key % 2 == 0) return {};
  sizes cuts{0, total};
  for (std::uint64_t k = key % 4; k > 0; --k) cuts.push_back(draw(key, k) % (total + 1));
  std::sort(cuts.begin(), cuts.end());
  sizes pieces;
  for (std::size_t i = 1; i < cuts.size(); ++i) pieces.push_back(cuts[i] - cuts[i - 1]);
  return pieces;
}

void check_alltoall_segments(const mpi_communicator& c, std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto me = static_cast<std::size_t>(c.rank());
  struct piece {
    std::size_t peer, offset, bytes, at;  // offset within the message, at: position in the buffer
  };
  // Send side: the pieces for every peer, scattered through one buffer in a shuffled order.
  std::vector<piece> out;
  std::vector<piece> in;
  for (std::size_t p = 0; p < n; ++p) {
    std::size_t offset = 0;
    for (const std::size_t b : message_cut(seed, me, p, 0)) {
      out.push_back({p, offset, b, 0});
      offset += b;
    }
    offset = 0;
    for (const std::size_t b : message_cut(seed, p, me, 1)) {
      in.push_back({p, offset, b, 0});
      offset += b;
    }
  }
  std::vector<std::size_t> shuffled = forward(out.size());
  std::sort(shuffled.begin(), shuffled.end(),
            [&](std::size_t a, std::size_t b) { return draw(seed, 9, me, a) < draw(seed, 9, me, b); });
  std::size_t send_total = 0;
  for (const std::size_t i : shuffled) {
    out[i].at = send_total;
    send_total += out[i].bytes + 1;
  }
  // Receive side, peer by peer: an even peer's pieces back to back in message order (adjacent pieces, which
  // the datatype merges), an odd peer's in reverse order with gaps.
  std::size_t recv_total = 0;
  for (std::size_t first = 0; first < in.size();) {
    std::size_t last = first;
    while (last < in.size() && in[last].peer == in[first].peer) ++last;
    const bool reverse = in[first].peer % 2 == 1;
    for (std::size_t k = 0; k < last - first; ++k) {
      piece& r = in[reverse ? last - 1 - k : first + k];
      r.at = recv_total;
      recv_total += r.bytes + (reverse ? 1 : 0);
    }
    recv_total += 1;
    first = last;
  }
  bytes send(send_total, std::byte{0xAA});
  bytes recv(recv_total, untouched);
  bytes want(recv_total, untouched);
  std::vector<std::vector<redist::const_segment>> send_pieces(n);
  std::vector<std::vector<redist::segment>> recv_pieces(n);
  for (const piece& s : out) {
    fill(std::span(send).subspan(s.at, s.bytes), seed, c.rank(), static_cast<int>(s.peer), s.offset);
    send_pieces[s.peer].push_back({send.data() + s.at, s.bytes});
  }
  for (const piece& r : in) {
    fill(std::span(want).subspan(r.at, r.bytes), seed, static_cast<int>(r.peer), c.rank(), r.offset);
    recv_pieces[r.peer].push_back({recv.data() + r.at, r.bytes});
  }
  redist::detail::exchange_segments(c, send_pieces, recv_pieces);
  check_bytes(recv, want, "exchange_segments");
}

void check_alltoall(const mpi_communicator& c, std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(c.size());
  for (const std::size_t block : {std::size_t{0}, std::size_t{1}, std::size_t{37}}) {
    bytes send(block * n);
    bytes want(block * n);
    for (std::size_t p = 0; p < n; ++p) {
      fill(std::span(send).subspan(p * block, block), seed, c.rank(), static_cast<int>(p));
      fill(std::span(want).subspan(p * block, block), seed, static_cast<int>(p), c.rank());
    }
    bytes recv(block * n, untouched);
    c.alltoall(send, recv, block);
    check_bytes(recv, want, "alltoall of " + std::to_string(block) + "-byte blocks");
  }
}

void check_allgatherv(const mpi_communicator& c, std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(c.size());
  const auto length = [&](std::size_t p) { return (p * 5 + seed) % 11; };
  bytes mine(length(static_cast<std::size_t>(c.rank())));
  fill(mine, seed, c.rank(), -1);
  bytes want;
  sizes want_counts;
  for (std::size_t p = 0; p < n; ++p) {
    bytes theirs(length(p));
    fill(theirs, seed, static_cast<int>(p), -1);
    want.insert(want.end(), theirs.begin(), theirs.end());
    want_counts.push_back(theirs.size());
  }
  sizes counts;
  check_bytes(redist::allgatherv(c, mine, &counts), want, "allgatherv");
  CHECK(counts == want_counts);
  check_bytes(redist::allgatherv(c, mine), want, "allgatherv without counts");
}

void check_allreduce(const mpi_communicator& c) {
  const auto n = static_cast<std::uint64_t>(c.size());
  const std::uint64_t big = std::uint64_t{1} << 40;  // beyond 32 bits
  const std::uint64_t mine = big + static_cast<std::uint64_t>(c.rank());
  CHECK(c.allreduce_max(mine) == big + n - 1);
  CHECK(c.allreduce_min(mine) == big);
  CHECK(c.allreduce_sum(mine) == n * big + n * (n - 1) / 2);
  CHECK(c.allreduce_min_max(mine) == std::pair{big, big + n - 1});
  // The extremes of the range, where ~value wraps: rank r passes r, except the last, which passes 2^64 - 1.
  const bool last = c.rank() == c.size() - 1;
  const std::uint64_t edge = last ? ~std::uint64_t{0} : static_cast<std::uint64_t>(c.rank());
  CHECK(c.allreduce_min_max(edge) == std::pair{c.size() == 1 ? ~std::uint64_t{0} : 0, ~std::uint64_t{0}});
  c.barrier();
}

// Blocking ring: rank 0 sends first, every other rank receives first, so no send waits on another.
void check_send_recv(const mpi_communicator& c, std::uint64_t seed) {
  const int n = c.size();
  if (n == 1) return;  // a blocking send to oneself may wait for its receive: the nonblocking check covers it
  const int next = (c.rank() + 1) % n;
  const int prev = (c.rank() + n - 1) % n;
  const auto length = [](int from) { return 50 + 7 * static_cast<std::size_t>(from); };
  bytes out(length(c.rank()));
  fill(out, seed, c.rank(), next);
  bytes in(length(prev), untouched);
  bytes want(length(prev));
  fill(want, seed, prev, c.rank());
  if (c.rank() == 0) {
    c.send(out, next, 5);
    c.recv(in, prev, 5);
  } else {
    c.recv(in, prev, 5);
    c.send(out, next, 5);
  }
  check_bytes(in, want, "send/recv ring");
}

void check_nonblocking(const mpi_communicator& c, std::uint64_t seed) {
  const int n = c.size();
  const auto length = [&](int from, int to) {
    return draw(seed, 6, static_cast<std::uint64_t>(from), static_cast<std::uint64_t>(to)) % 30;
  };
  std::vector<bytes> out(static_cast<std::size_t>(n));
  std::vector<bytes> in(static_cast<std::size_t>(n));
  std::vector<redist::mpi_request> requests;
  for (int p = 0; p < n; ++p) {  // receives posted first, from everyone including this rank
    in[static_cast<std::size_t>(p)].assign(length(p, c.rank()), untouched);
    requests.push_back(c.irecv(in[static_cast<std::size_t>(p)], p, 3));
  }
  for (int p = 0; p < n; ++p) {
    out[static_cast<std::size_t>(p)].resize(length(c.rank(), p));
    fill(out[static_cast<std::size_t>(p)], seed, c.rank(), p);
    requests.push_back(c.isend(out[static_cast<std::size_t>(p)], p, 3));
  }
  CHECK(requests.front().pending());
  redist::wait_all(requests);
  for (const redist::mpi_request& r : requests) CHECK_FALSE(r.pending());
  for (int p = 0; p < n; ++p) {
    bytes want(length(p, c.rank()));
    fill(want, seed, p, c.rank());
    check_bytes(in[static_cast<std::size_t>(p)], want, "isend/irecv from " + std::to_string(p));
  }

  // Two broadcasts in flight at once, completed in the reverse order.
  bytes first(300);
  bytes second(77);
  bytes want_first(first.size());
  bytes want_second(second.size());
  fill(want_first, seed, 0, -2);
  fill(want_second, seed, n - 1, -2);
  if (c.rank() == 0) first = want_first;
  if (c.rank() == n - 1) second = want_second;
  redist::mpi_request a = c.ibroadcast(first, 0);
  redist::mpi_request b = c.ibroadcast(second, n - 1);
  redist::mpi_request moved = std::move(b);
  CHECK_FALSE(b.pending());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  moved.wait();
  a.wait();
  a.wait();  // waiting again is harmless
  check_bytes(first, want_first, "ibroadcast from 0");
  check_bytes(second, want_second, "ibroadcast from the last rank");
}

void check_all_operations(const mpi_communicator& c, std::uint64_t seed) {
  INFO("communicator of size " << c.size() << ", rank " << c.rank());
  check_broadcast(c, seed);
  check_gatherv(c, seed);
  check_scatterv(c, seed);
  check_alltoallv(c, seed);
  check_alltoall_segments(c, seed);
  check_alltoall(c, seed);
  check_allgatherv(c, seed);
  check_allreduce(c);
  check_send_recv(c, seed);
  check_nonblocking(c, seed);
}

}  // namespace

TEST_CASE("every operation on the world, byte for byte") {
  REDIST_AGREED_SEED(seed);
  const mpi_communicator c(MPI_COMM_WORLD);
  CHECK(c.rank() == redist::test::world().rank);
  CHECK(c.size() == redist::test::world().size);
  check_all_operations(c, seed);
}

TEST_CASE("every operation on a communicator numbered backwards and on a split subset") {
  REDIST_AGREED_SEED(seed);
  const auto [rank, size] = redist::test::world();
  const auto reversed = redist::test::reversed_world();
  const mpi_communicator c(reversed.get());
  CHECK(c.rank() == size - 1 - rank);
  check_all_operations(c, seed ^ 1);

  const auto odd = redist::test::odd_ranks();
  if (odd.is_member()) {
    const mpi_communicator o(odd.get());
    CHECK(o.rank() == rank / 2);
    CHECK(o.size() == size / 2);
    check_all_operations(o, seed ^ 2);
  }
}

TEST_CASE("every operation on sub-groups: the odd ranks, and a group of a group") {
  REDIST_AGREED_SEED(seed);
  const auto [rank, size] = redist::test::world();
  const mpi_communicator c(MPI_COMM_WORLD);
  const std::vector<int> odd = odd_ranks_of(size);
  if (const mpi_communicator* g = c.group(odd)) check_all_operations(*g, seed ^ 3);

  std::vector<int> backwards(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) backwards[static_cast<std::size_t>(r)] = size - 1 - r;
  const mpi_communicator* b = c.group(backwards);  // every rank is a member
  CHECK(b != nullptr);
  if (b == nullptr) return;
  // The low half of the world, in descending order, named by their ranks in b.
  const std::vector<int> tail(backwards.begin() + size / 2, backwards.end());
  std::vector<int> in_b;
  for (const int r : tail) in_b.push_back(b->group_rank(backwards, r));
  if (const mpi_communicator* gg = b->group(in_b)) {
    CHECK(world_ranks_of(gg->native()) == tail);
    check_all_operations(*gg, seed ^ 4);
  }
}

TEST_CASE("the chunked and datatype paths, with the chunk size lowered to 7 bytes") {
  REDIST_AGREED_SEED(seed);
  const scoped_max_count small(7);
  const mpi_communicator c(MPI_COMM_WORLD);
  check_all_operations(c, seed ^ 5);
  const auto reversed = redist::test::reversed_world();
  check_all_operations(mpi_communicator(reversed.get()), seed ^ 6);
  if (const mpi_communicator* g = c.group(odd_ranks_of(c.size()))) check_all_operations(*g, seed ^ 7);
}

TEST_CASE("group(): members only, rank order as given, cached, groups of groups") {
  const auto [rank, size] = redist::test::world();
  const mpi_communicator c(MPI_COMM_WORLD);

  const std::vector<int> odd = odd_ranks_of(size);
  const mpi_communicator* g = c.group(odd);
  CHECK((g != nullptr) == (rank % 2 == 1));
  CHECK(c.group(odd) == g);  // cached (nullptr again on non-members)
  if (g != nullptr) {
    CHECK(g->size() == static_cast<int>(odd.size()));
    CHECK(g->rank() == rank / 2);
    CHECK(world_ranks_of(g->native()) == odd);
  }

  // Order as given: the group's rank i is ranks[i].
  std::vector<int> backwards(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) backwards[static_cast<std::size_t>(r)] = size - 1 - r;
  const mpi_communicator* b = c.group(backwards);
  CHECK(b != nullptr);
  CHECK(b == c.group(backwards));
  if (b != nullptr) {
    CHECK(b->rank() == size - 1 - rank);
    CHECK(world_ranks_of(b->native()) == backwards);
    std::vector<std::byte> who(sizeof(int));
    const int mine = rank;
    std::memcpy(who.data(), &mine, sizeof mine);
    b->broadcast(who, 0);  // b's root is the last world rank
    int root = -1;
    std::memcpy(&root, who.data(), sizeof root);
    CHECK(root == size - 1);

    // A group of a group: b's ranks {1, 0} are world ranks {size - 2, size - 1}.
    if (size >= 2) {
      const std::vector<int> pair{1, 0};
      const mpi_communicator* gg = b->group(pair);
      CHECK((gg != nullptr) == (rank >= size - 2));
      if (gg != nullptr) {
        CHECK(world_ranks_of(gg->native()) == std::vector<int>{size - 2, size - 1});
        CHECK(gg->rank() == (rank == size - 2 ? 0 : 1));
        CHECK(gg->group(std::vector<int>{0, 1}) == gg->group(std::vector<int>{0, 1}));
      }
    }
  }

  // All ranks in order: a communicator of its own, like any rank set.
  std::vector<int> all(static_cast<std::size_t>(size));
  std::iota(all.begin(), all.end(), 0);
  const mpi_communicator* whole = c.group(all);
  CHECK(whole != &c);
  CHECK(whole == c.group(all));
  CHECK(whole->rank() == rank);

  // Disjoint groups created at the same time, each collective over its own members only.
  std::vector<int> even;
  for (int r = 0; r < size; r += 2) even.push_back(r);
  const mpi_communicator* e = c.group(even);
  const mpi_communicator* o = c.group(odd);
  CHECK(o == g);
  const mpi_communicator* mine = rank % 2 == 0 ? e : o;
  CHECK(mine != nullptr);
  CHECK((rank % 2 == 0 ? o : e) == nullptr);
  if (mine != nullptr) CHECK(mine->allreduce_sum(1) == static_cast<std::uint64_t>(mine->size()));

  // One rank alone.
  const std::vector<int> last{size - 1};
  const mpi_communicator* alone = c.group(last);
  CHECK((alone != nullptr) == (rank == size - 1));
  if (alone != nullptr && size > 1) CHECK(alone->size() == 1);

  CHECK(c.group(std::vector<int>{}) == nullptr);
  CHECK(redist::group_rank(backwards, 0) == size - 1);
  CHECK(mpi_communicator::group_rank(odd, 0) == -1);
}

TEST_CASE("the user's communicator is duplicated, never changed; moves keep groups alive") {
  const auto [rank, size] = redist::test::world();
  MPI_Errhandler before = MPI_ERRHANDLER_NULL;
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &before);
  {
    mpi_communicator c(MPI_COMM_WORLD);
    CHECK(c.native() != MPI_COMM_WORLD);
    int result = MPI_UNEQUAL;
    MPI_Comm_compare(c.native(), MPI_COMM_WORLD, &result);
    CHECK(result == MPI_CONGRUENT);
    MPI_Errhandler ours = MPI_ERRHANDLER_NULL;
    MPI_Comm_get_errhandler(c.native(), &ours);
    CHECK(ours == MPI_ERRORS_RETURN);
    MPI_Errhandler_free(&ours);

    std::vector<int> all(static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) all[static_cast<std::size_t>(r)] = size - 1 - r;
    const mpi_communicator* g = c.group(all);
    const MPI_Comm handle = c.native();
    mpi_communicator moved = std::move(c);
    CHECK(moved.native() == handle);
    CHECK(c.native() == MPI_COMM_NULL);  // NOLINT(bugprone-use-after-move): checking the moved-from state
    CHECK(moved.group(all) == g);
    CHECK(g->allreduce_sum(1) == static_cast<std::uint64_t>(size));
  }
  MPI_Errhandler after = MPI_ERRHANDLER_NULL;
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &after);
  CHECK(after == before);
  MPI_Errhandler_free(&before);
  MPI_Errhandler_free(&after);
  CHECK(redist::test::all_ranks(true));  // the user's communicator still works
  CHECK(rank < size);
}

TEST_CASE("errors are redist::error on every rank, without hanging") {
  const auto [rank, size] = redist::test::world();
  const mpi_communicator c(MPI_COMM_WORLD);
  using doctest::Contains;

  // Computed locally, the same on every rank.
  const std::string out_of_range = "rank " + std::to_string(size) + " is out of range";
  CHECK_THROWS_WITH_AS(c.group(std::vector<int>{0, size}), Contains(out_of_range.c_str()), redist::error);
  CHECK_THROWS_WITH_AS(c.group(std::vector<int>{-1}), Contains("out of range"), redist::error);
  CHECK_THROWS_WITH_AS(c.group(std::vector<int>{0, 0}), Contains("rank 0 appears more than once"),
                       redist::error);
  CHECK_THROWS_WITH_AS(mpi_communicator(MPI_COMM_NULL), Contains("MPI_COMM_NULL"), redist::error);
  bytes buf(8);
  CHECK_THROWS_WITH_AS(c.gatherv(buf, buf, {}, {}, size), Contains("gatherv: root"), redist::error);
  CHECK_THROWS_WITH_AS(c.alltoall(buf, buf, 3), Contains("alltoall: send has 8"), redist::error);
  const sizes too_few(static_cast<std::size_t>(size) + 1);
  CHECK_THROWS_WITH_AS(c.alltoallv(buf, too_few, too_few, buf, too_few, too_few), Contains("one per rank"),
                       redist::error);
  sizes past_end(static_cast<std::size_t>(size), 1);
  past_end.back() = 9;
  const sizes zeros(static_cast<std::size_t>(size), 0);
  CHECK_THROWS_WITH_AS(c.alltoallv(buf, past_end, zeros, buf, zeros, zeros),
                       Contains("exceeds the buffer of 8"), redist::error);
  CHECK_THROWS_WITH_AS(redist::detail::exchange_segments(c, {}, {}), Contains("expected one per rank"),
                       redist::error);
  // Root-only checks, on a group of this rank alone (each rank the root of its own): no other rank waits.
  const mpi_communicator* alone = c.group(std::vector<int>{rank});
  CHECK_THROWS_WITH_AS(alone->gatherv(buf, buf, sizes{5}, sizes{0}, 0),
                       Contains("gatherv: root's own count is 5 bytes but its buffer holds 8"),
                       redist::error);
  CHECK_THROWS_WITH_AS(
      alone->scatterv(buf, sizes{8}, sizes{1}, buf, 0),
      Contains("scatterv: send block of rank 0 (8 bytes at offset 1) exceeds the buffer of 8"),
      redist::error);

  // Found by MPI's own argument checks: returned (MPI_ERRORS_RETURN) and thrown, not fatal.
  CHECK_THROWS_WITH_AS(c.broadcast(buf, size), Contains("redist::mpi_communicator: MPI_Bcast failed: "),
                       redist::error);
  CHECK_THROWS_WITH_AS(c.send(buf, size, 0), Contains("MPI_Send failed: "), redist::error);
  CHECK_THROWS_WITH_AS(c.send(buf, 0, -5), Contains("MPI_Send failed: "), redist::error);
  CHECK_THROWS_WITH_AS(static_cast<void>(c.isend(buf, size + 3, 0)), Contains("MPI_Isend failed: "),
                       redist::error);

  // A message of the wrong size: fewer bytes than expected is caught by redist, more by MPI (truncation).
  bytes ten(10);
  bytes twelve(12);
  bytes five(5);
  {
    redist::mpi_request s = c.isend(ten, rank, 11);
    CHECK_THROWS_WITH_AS(c.recv(twelve, rank, 11), Contains("recv: a message of 10 bytes arrived from rank"),
                         redist::error);
    s.wait();
  }
  {
    redist::mpi_request s = c.isend(ten, rank, 12);
    redist::mpi_request r = c.irecv(twelve, rank, 12);
    CHECK_THROWS_WITH_AS(r.wait(), Contains("irecv: a message of 10 bytes"), redist::error);
    s.wait();
  }
  // More bytes than expected: MPI reports truncation (between two ranks: Open MPI 4.1 silently truncates a
  // message to oneself). Small messages only: Open MPI aborts on a truncated message sent by rendezvous.
  if (size >= 2 && rank < 2) {
    bytes sent(10);
    fill(sent, 99, 1, 0);
    if (rank == 1) {
      c.send(sent, 0, 13);
      c.send(sent, 0, 15);
      c.send(sent, 0, 14);
    } else {
      // wait_all completes every request before it throws the first failure.
      std::vector<redist::mpi_request> both;
      both.push_back(c.irecv(five, 1, 13));
      both.push_back(c.irecv(ten, 1, 15));
      CHECK_THROWS_WITH_AS(redist::wait_all(both), Contains("MPI_Wait failed: "), redist::error);
      CHECK_FALSE(both[1].pending());
      check_bytes(ten, sent, "the good receive beside a failed one");
      CHECK_THROWS_WITH_AS(c.recv(five, 1, 14), Contains("MPI_Recv failed: "), redist::error);
    }
  }

  // mpi_check itself, with a code MPI did not return.
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(MPI_ERR_TRUNCATE, text, &length);
  const std::string expected =
      "redist::mpi_communicator: MPI_Fake failed: " + std::string(text, static_cast<std::size_t>(length));
  CHECK_THROWS_WITH_AS(redist::detail::mpi_check(MPI_ERR_TRUNCATE, "MPI_Fake"), expected.c_str(),
                       redist::error);
  CHECK_NOTHROW(redist::detail::mpi_check(MPI_SUCCESS, "MPI_Fake"));

  c.barrier();  // still usable after all of that
  CHECK(redist::test::all_ranks(true));
}

TEST_CASE("a request destroyed while pending waits for its operation") {
  const int rank = redist::test::world().rank;
  const mpi_communicator c(MPI_COMM_WORLD);
  bytes out(64);
  fill(out, 42, rank, rank);
  bytes in(64, untouched);
  redist::mpi_request s = c.isend(out, rank, 21);
  { redist::mpi_request r = c.irecv(in, rank, 21); }  // not waited: its destructor does
  check_bytes(in, out, "irecv completed by the destructor");
  s = redist::mpi_request();  // move-assigning over a pending request waits for it too
  CHECK_FALSE(s.pending());
}

namespace {

// 2 GiB + 4 KiB with a pattern of prime period: a chunk landing at a wrong offset shifts it.
constexpr std::size_t big_bytes = std::size_t{INT_MAX} + 4099;
constexpr std::size_t period = 1048573;

const bytes& two_periods() {
  static const bytes base = [] {
    bytes b(2 * period);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = pattern(7, 0, 0, i % period);
    return b;
  }();
  return base;
}

void fill_periodic(std::byte* p, std::size_t n) {
  for (std::size_t off = 0; off < n; off += period) {
    std::memcpy(p + off, two_periods().data(), std::min(period, n - off));
  }
}

// Whether p[0, n) is the pattern starting at position `phase`.
bool is_periodic(const std::byte* p, std::size_t n, std::size_t phase) {
  for (std::size_t off = 0; off < n; off += period) {
    if (std::memcmp(p + off, two_periods().data() + phase % period, std::min(period, n - off)) != 0)
      return false;
  }
  return true;
}

// A zero-filled anonymous mapping, populated up front (MAP_POPULATE): touching 2 GiB of fresh pages one fault
// at a time takes seconds on a VM, populating them in one call a fraction of that. Empty when the memory is
// not there.
class big_buffer {
 public:
  explicit big_buffer(std::size_t n) : bytes_(n) {
    if (n == 0) return;
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) data_ = static_cast<std::byte*>(p);
  }
  ~big_buffer() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }
  big_buffer(const big_buffer&) = delete;
  big_buffer& operator=(const big_buffer&) = delete;
  std::byte* data() const noexcept { return data_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t bytes_;
};

}  // namespace

TEST_CASE("more than INT_MAX bytes in one call (np = 2)") {
  // Two ranks each hold one 2 GiB buffer: the smallest run in which the bytes cross between processes (an
  // exchange with oneself needs two buffers). The chunked and datatype paths run at every size with the chunk
  // size lowered (above); this case checks MPI itself with counts of INT_MAX and a datatype of more than
  // INT_MAX bytes, on the hot path (alltoall_segments) and point to point. About 7 s on an idle 2-core VM,
  // mostly the first touch of 4 GiB; ASan adds little (the bulk is memcpy/memcmp and MPI's copies, checked
  // per call, not per byte), so it runs there too. Skipped without 8 GiB of free memory on every rank.
  const auto [rank, size] = redist::test::world();
  if (size != 2) return;
  const auto start = std::chrono::steady_clock::now();
  const mpi_communicator c(MPI_COMM_WORLD);
  const auto free_bytes =
      static_cast<std::size_t>(sysconf(_SC_AVPHYS_PAGES)) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const big_buffer buf(free_bytes >= (std::size_t{8} << 30) ? big_bytes : 0);
  if (!redist::test::all_ranks(buf.data() != nullptr)) {
    MESSAGE("skipped: not enough free memory for 2 GiB per rank");
    return;
  }

  // The zero-copy exchange: rank 0 sends the whole buffer as one piece to rank 1, which receives it into two
  // pieces in reverse order (its second half first): datatypes of 2 blocks on both sides.
  std::vector<std::vector<redist::const_segment>> send_pieces(2);
  std::vector<std::vector<redist::segment>> recv_pieces(2);
  const std::size_t half = big_bytes / 2 + 12345;
  if (rank == 0) {
    fill_periodic(buf.data(), big_bytes);
    send_pieces[1].push_back({buf.data(), big_bytes});
  } else {
    recv_pieces[0] = {{buf.data() + half, big_bytes - half}, {buf.data(), half}};
  }
  redist::detail::exchange_segments(c, send_pieces, recv_pieces);
  if (rank == 1) {
    CHECK(is_periodic(buf.data() + half, big_bytes - half, 0));
    CHECK(is_periodic(buf.data(), half, big_bytes - half));
  }

  // Point to point, back from rank 1 to rank 0: two MPI_Send chunks, each received and its size checked.
  if (rank == 0) {
    std::memset(buf.data(), 0, big_bytes);
    c.recv({buf.data(), big_bytes}, 1, 0);
    CHECK(is_periodic(buf.data(), half, big_bytes - half));
    CHECK(is_periodic(buf.data() + half, big_bytes - half, 0));
  } else {
    c.send({buf.data(), big_bytes}, 0, 0);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("2 transfers of " << big_bytes << " bytes (more than INT_MAX) at np=2 in " << seconds << " s");
}
