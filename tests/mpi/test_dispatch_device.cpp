// MPI tests of redist::dispatch() on device tensors without a GPU, on the stand-in device of sim_device.hpp:
// seeded items (several tensors below and above pack_below, nested lists and fields, empty items, fewer items
// than ranks) from every root, on the world, numbered backwards and on part of the world, through both
// overloads, must arrive with the host dispatch's structure and bytes exactly; no copy touches host memory;
// the tables on the root and on a receiver do not grow with the small tensors (never one per tensor); and a
// bad root or a space on another stream than the communicator's fails alike on every rank.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "nested_text.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/nested.hpp"
#include "redist/dispatch.hpp"
#include "sim_device.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::test::all_ranks;
using redist::test::host_touches;
using redist::test::mix;
using redist::test::sim_space;
using redist::test::sim_tensor;
using host_tree = redist::nested<host_tensor>;
using sim_tree = redist::nested<sim_tensor>;

struct draw {
  std::uint64_t state;
  std::uint64_t next() { return state = mix(state); }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
};

// A tensor of drawn dtype and bytes: a few elements, none, or (large) some 20-60 KiB, above the default
// pack_below.
host_tensor drawn_tensor(draw& g, bool large) {
  const auto type = static_cast<dtype>(g.below(redist::dtype_count));
  std::vector<std::int64_t> shape(g.below(3));
  for (auto& e : shape) e = static_cast<std::int64_t>(g.below(4));
  if (large) shape.insert(shape.begin(), static_cast<std::int64_t>((20000 + g.below(40000)) / size_of(type)));
  host_tensor t(type, shape);
  auto bytes = t.bytes();
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(g.next() & 0xff);
  if (type == dtype::boolean)
    for (auto& b : bytes) b &= std::byte{1};
  return t;
}

host_tree drawn_node(draw& g, int depth) {
  const std::uint64_t kind = depth == 0 ? 0 : g.below(4);
  if (kind <= 1) return drawn_tensor(g, g.below(5) == 0);
  host_tree::list l;
  for (std::uint64_t i = 0, n = g.below(4); i < n; ++i) l.push_back(drawn_node(g, depth - 1));
  if (kind == 2) return l;
  host_tree::fields f;
  for (std::size_t i = 0; i < l.size(); ++i) f.push_back({"f" + std::to_string(i), std::move(l[i])});
  return f;
}

// `small` small tensors beside large ones, in nested fields and lists (the packed bytes straddle the first
// message and the rest when small is large).
host_tree mixed_item(draw& g, std::size_t small) {
  host_tree::list smalls;
  for (std::size_t i = 0; i < small; ++i) smalls.push_back(drawn_tensor(g, false));
  host_tree::fields inner;
  inner.push_back({"a", drawn_tensor(g, false)});
  inner.push_back({"b", host_tree::list{drawn_tensor(g, true), host_tree(), drawn_tensor(g, false)}});
  host_tree::fields f;
  f.push_back({"small", std::move(smalls)});
  f.push_back({"large", drawn_tensor(g, true)});
  f.push_back({"nested", host_tree::list{std::move(inner), host_tree::fields{}}});
  return f;
}

// Rank r's item in a case: empty items, a lone tensor, a mixed item, or a drawn tree.
host_tree make_item(std::uint64_t seed, std::uint64_t case_id, int r) {
  draw g{mix(seed, case_id, static_cast<std::uint64_t>(r))};
  switch (g.below(6)) {
    case 0:
      return host_tree();
    case 1:
      return host_tree::fields{};
    case 2:
      return drawn_tensor(g, g.below(2) == 0);
    case 3:
    case 4:
      return mixed_item(g, 5 + g.below(200));
    default:
      return drawn_node(g, 3);
  }
}

// A deep copy in the stand-in device memory (the test's own copy, outside the space).
sim_tree to_sim(const host_tree& n) {
  if (n.is_tensor()) {
    const host_tensor& h = n.tensor();
    sim_tensor s = sim_tensor::make(h.dtype(), h.shape());
    if (s.nbytes != 0) std::memcpy(s.bytes.get(), h.data(), s.nbytes);
    return s;
  }
  if (n.is_list()) {
    sim_tree::list l;
    for (const auto& c : n.items()) l.push_back(to_sim(c));
    return l;
  }
  sim_tree::fields f;
  for (const auto& x : n.named()) f.push_back({x.name, to_sim(x.value)});
  return f;
}

using redist::test::describe;

bool same(const sim_tree& got, const host_tree& want) {
  std::string gs, ws;
  std::vector<std::byte> gb, wb;
  describe(got, gs, gb);
  describe(want, ws, wb);
  return gs == ws && gb == wb;
}

// One case on comm: the host dispatch of the items, then the same on sim copies of them through `space`
// (moving them in when `move`); true when the results agree and no copy touched host memory.
bool run_case(const redist::mpi_communicator& comm, std::uint64_t seed, std::uint64_t case_id, int root,
              std::size_t items, const redist::dispatch_options& options, bool move, const sim_space& space,
              host_tree (*item)(std::uint64_t, std::uint64_t, int) = make_item) {
  std::vector<host_tree> host_items;
  if (comm.rank() == root)
    for (std::size_t r = 0; r < items; ++r) host_items.push_back(item(seed, case_id, static_cast<int>(r)));
  const host_tree want = redist::dispatch(comm, host_items, root, options);
  std::vector<sim_tree> sim_items;
  for (const auto& h : host_items) sim_items.push_back(to_sim(h));
  host_touches = 0;
  const sim_tree got = move ? redist::dispatch(comm, std::move(sim_items), root, options, space)
                            : redist::dispatch<sim_tensor>(comm, sim_items, root, options, space);
  return host_touches == 0 && same(got, want);
}

// Every root, with fewer items than ranks and every kind of pack_below, through both overloads.
void check_every_root(const std::string& name, MPI_Comm native, std::uint64_t seed) {
  bool ok = true;
  if (native != MPI_COMM_NULL) {
    const redist::mpi_communicator comm(native);
    const std::size_t pack[] = {redist::dispatch_options{}.pack_below, 0, 64, SIZE_MAX};
    const auto size = static_cast<std::size_t>(comm.size());
    for (int root = 0; root < comm.size(); ++root) {
      for (std::uint64_t k = 0; k < 8; ++k) {
        const auto case_id = static_cast<std::uint64_t>(root) * 100 + k;
        const std::size_t items = k == 1 ? 0 : k == 2 ? size / 2 : size;
        const bool move = k % 2 == 1;
        ok = run_case(comm, seed, case_id, root, items, {.pack_below = pack[k % 4]}, move, sim_space{}) && ok;
      }
    }
  }
  INFO(name << ", this rank: " << (ok ? "ok" : "differs from the host dispatch or touched host memory"));
  CHECK(all_ranks(ok));
}

}  // namespace

TEST_CASE("dispatch on device: the host dispatch's items from every root, copies only in device memory") {
  REDIST_AGREED_SEED(seed);
  check_every_root("world", MPI_COMM_WORLD, seed);
  const auto reversed = redist::test::reversed_world();
  check_every_root("reversed world", reversed.get(), seed + 1);
  const auto part = redist::test::all_but_rank0();
  check_every_root("every rank but world rank 0", part.get(), seed + 2);
}

template <std::size_t Small>
host_tree mixed(std::uint64_t seed, std::uint64_t case_id, int r) {
  draw g{mix(seed, case_id, static_cast<std::uint64_t>(r))};
  return mixed_item(g, Small);
}

// Count tensors of 100 bytes: 3 fit in the first message with the schema, 30 straddle it and the rest.
template <std::size_t Count>
host_tree row(std::uint64_t seed, std::uint64_t case_id, int r) {
  host_tree::list l;
  for (std::size_t i = 0; i < Count; ++i) {
    host_tensor t(dtype::u8, {100});
    const std::uint64_t key = mix(seed, case_id, static_cast<std::uint64_t>(r) * Count + i);
    for (std::size_t j = 0; j < t.bytes().size(); ++j) t.bytes()[j] = static_cast<std::byte>(mix(key, j));
    l.push_back(std::move(t));
  }
  return l;
}

TEST_CASE("dispatch on device: the tables on the root and on a receiver do not grow with the small tensors") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  const auto receivers = static_cast<std::size_t>(n - 1);
  host_tree (*const kinds[])(std::uint64_t, std::uint64_t, int) = {mixed<3>, mixed<300>, row<3>, row<30>};
  bool ok = true;
  for (const bool move : {false, true}) {
    for (int root = 0; root < n; ++root) {
      // The root: one table packs every receiver's small tensors, one copies its own item (unless moved), and
      // the packed bytes come to the host in one read. A receiver: one table unpacks.
      const bool at_root = comm.rank() == root;
      const std::size_t tables = !at_root ? 1 : (receivers != 0 ? 1 : 0) + (move ? 0 : 1);
      std::string counts;
      for (const auto item : kinds) {
        const sim_space space;
        ok = run_case(comm, seed, 1, root, static_cast<std::size_t>(n), {}, move, space, item) && ok;
        const std::size_t reads = space.count->reads;
        ok = ok && space.count->tables == tables && reads == (at_root && receivers != 0 ? 1 : 0);
        counts += " " + std::to_string(space.count->tables) + "/" + std::to_string(reads);
      }
      CAPTURE(move);
      CAPTURE(root);
      INFO("this rank's tables/reads:" << counts);
      CHECK(all_ranks(ok));
    }
  }
}

// The MPI communicator with a stream, as the device communicators have one.
struct streamed_comm {
  const redist::mpi_communicator& c;
  int stream_id;
  using request = redist::mpi_communicator::request;
  int stream() const { return stream_id; }
  int rank() const { return c.rank(); }
  int size() const { return c.size(); }
  const streamed_comm* group(std::span<const int>) const { return nullptr; }
  void broadcast(auto&&... a) const { c.broadcast(a...); }
  void gatherv(auto&&... a) const { c.gatherv(a...); }
  void scatterv(auto&&... a) const { c.scatterv(a...); }
  void alltoallv(auto&&... a) const { c.alltoallv(a...); }
  void alltoall(auto&&... a) const { c.alltoall(a...); }
  std::vector<std::byte> allgatherv(auto&&... a) const { return c.allgatherv(a...); }
  void allgather(std::span<const std::byte> m, std::span<std::byte> out) const { c.allgather(m, out); }
  void send(std::span<const std::byte> b, int to, int tag) const { c.send(b, to, tag); }
  void recv(std::span<std::byte> b, int from, int tag) const { c.recv(b, from, tag); }
  request isend(std::span<const std::byte> b, int to, int tag) const { return c.isend(b, to, tag); }
  request irecv(std::span<std::byte> b, int from, int tag) const { return c.irecv(b, from, tag); }
  request ibroadcast(std::span<std::byte> b, int root) const { return c.ibroadcast(b, root); }
  auto start_group() const { return c.start_group(); }
};
static_assert(redist::communicator<streamed_comm>);

TEST_CASE("dispatch on device: a bad root or a space on another stream fails alike on every rank") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  REDIST_AGREED_SEED(seed);
  for (const int root : {-1, n}) {
    std::vector<sim_tree> items;
    items.push_back(to_sim(make_item(seed, 3, 0)));
    const auto o = redist::test::outcome_of(
        [&] { (void)redist::dispatch<sim_tensor>(comm, items, root, {}, sim_space{}); });
    redist::test::check_agreed_error(
        o, comm,
        {"redist::dispatch: root " + std::to_string(root) + " is out of range for a communicator of " +
         std::to_string(n) + " ranks"});
  }
  // Rank n - 1's space is on stream 2, its communicator's on stream 1.
  const int odd = n - 1;
  const streamed_comm streamed{comm, 1};
  sim_space space;
  if (comm.rank() == odd) space.stream_id = 2;
  std::vector<sim_tree> items;
  if (comm.rank() == 0)
    for (int r = 0; r < n; ++r) items.push_back(to_sim(make_item(seed, 4, r)));
  host_touches = 0;
  const auto o =
      redist::test::outcome_of([&] { (void)redist::dispatch<sim_tensor>(streamed, items, 0, {}, space); });
  redist::test::check_agreed_error(o, comm,
                                   {"redist::dispatch: rank " + std::to_string(odd) +
                                    " passes a memory space on another stream than its communicator's"});
  // Nothing reached a receiver (the root may have packed, as it does before it knows).
  CHECK(all_ranks((comm.rank() == 0 || space.count->tables == 0) && host_touches == 0));
  // And the communicator is usable afterwards.
  CHECK(all_ranks(run_case(comm, seed, 5, 0, static_cast<std::size_t>(n), {}, false, sim_space{})));
}
