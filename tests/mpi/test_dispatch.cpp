// MPI tests of redist::dispatch(): seeded random nested items (lists in fields in lists, every dtype,
// zero-size and large tensors, empty items, a different structure per rank) from every root, with fewer items
// than ranks, on the world, on a communicator numbered backwards and on permuted sub-communicators of part of
// the world; the root's own item copied or moved; bad input agreed on every rank with the communicator usable
// afterwards. Every rank rebuilds what it must receive from the seed and its rank alone.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "nested_text.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/comm/self.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/nested.hpp"
#include "redist/dispatch.hpp"

namespace user {

// A user's tensor type: shape and storage of its own, a contiguity flag, and storage that may be missing.
struct blob {
  redist::dtype type = redist::dtype::u8;
  std::vector<std::int64_t> shape;
  std::shared_ptr<std::vector<std::byte>> storage;
  bool contiguous = true;
};

}  // namespace user

template <>
struct redist::tensor_traits<user::blob> {
  static constexpr memory_space space = memory_space::host;
  static void* data(user::blob& t) { return t.storage ? t.storage->data() : nullptr; }
  static const void* data(const user::blob& t) { return t.storage ? t.storage->data() : nullptr; }
  static redist::dtype dtype(const user::blob& t) { return t.type; }
  static std::size_t rank(const user::blob& t) { return t.shape.size(); }
  static std::int64_t extent(const user::blob& t, std::size_t d) { return t.shape[d]; }
  static bool is_contiguous(const user::blob& t) { return t.contiguous; }
  static user::blob allocate(redist::dtype type, std::span<const std::int64_t> shape) {
    std::size_t n = redist::size_of(type);
    for (auto e : shape) n *= static_cast<std::size_t>(e);
    return {type, {shape.begin(), shape.end()}, std::make_shared<std::vector<std::byte>>(n), true};
  }
};

namespace {

using redist::dtype;
using redist::host_tensor;
using tree = redist::nested<host_tensor>;
using redist::test::all_ranks;

// ---- the independent expectation: every item is a pure function of (seed, case, rank) ----

using redist::test::mix;

struct draw {
  std::uint64_t state;
  std::uint64_t next() { return state = mix(state); }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
};

// The bytes of a tensor whose contents are keyed by `key`; bool bytes are 0 or 1.
void fill(std::byte* data, std::size_t bytes, std::uint64_t key, dtype type) {
  for (std::size_t i = 0; i < bytes; i += 8) {
    std::uint64_t word = mix(key, i);
    if (type == dtype::boolean) word &= 0x0101010101010101ull;
    std::memcpy(data + i, &word, std::min<std::size_t>(8, bytes - i));
  }
}

// A tensor of random dtype and shape: mostly a few elements, sometimes empty, sometimes tens of KiB (sent on
// its own under the default pack_below).
template <class Tensor = host_tensor>
Tensor random_tensor(draw& g) {
  const auto type = static_cast<dtype>(g.below(redist::dtype_count));
  const std::uint64_t size_class = g.below(10);
  std::vector<std::int64_t> shape(g.below(4));
  for (auto& e : shape) e = static_cast<std::int64_t>(1 + g.below(3));
  if (size_class == 0 && !shape.empty()) shape[g.below(shape.size())] = 0;
  if (size_class >= 8) shape.insert(shape.begin(), static_cast<std::int64_t>(2000 + g.below(6000)));
  Tensor t = redist::tensor_traits<Tensor>::allocate(type, shape);
  std::size_t bytes = redist::size_of(type);
  for (auto e : shape) bytes *= static_cast<std::size_t>(e);
  const std::uint64_t key = g.next();
  fill(static_cast<std::byte*>(redist::tensor_traits<Tensor>::data(t)), bytes, key, type);
  return t;
}

template <class Tensor>
redist::nested<Tensor> random_node(draw& g, int depth) {
  using node = redist::nested<Tensor>;
  const std::uint64_t kind = depth == 0 ? 0 : g.below(4);
  if (kind <= 1) return random_tensor<Tensor>(g);
  const std::uint64_t n = g.below(5);
  if (kind == 2) {
    typename node::list l;
    for (std::uint64_t i = 0; i < n; ++i) l.push_back(random_node<Tensor>(g, depth - 1));
    return l;
  }
  typename node::fields f;
  for (std::uint64_t i = 0; i < n; ++i)
    f.push_back({"k" + std::to_string(g.below(4)), random_node<Tensor>(g, depth - 1)});
  return f;
}

// The item for rank r in a case: shapes chosen so that every path is taken: empty items, a bare tensor,
// lists in fields in lists, many small tensors (the packed bytes overflow the first message), long names
// (the schema overflows it) and random trees.
template <class Tensor = host_tensor>
redist::nested<Tensor> make_item(std::uint64_t seed, std::uint64_t case_id, int r) {
  using node = redist::nested<Tensor>;
  draw g{mix(seed, case_id, static_cast<std::uint64_t>(r))};
  switch (g.below(10)) {
    case 0:
      return node();
    case 1:
      return typename node::fields{};
    case 2:
      return random_tensor<Tensor>(g);
    case 3: {
      typename node::list l;
      for (std::uint64_t i = 0, n = 40 + g.below(100); i < n; ++i) l.push_back(random_tensor<Tensor>(g));
      return l;
    }
    case 4: {
      typename node::fields f;
      for (std::uint64_t i = 0, n = 20 + g.below(30); i < n; ++i)
        f.push_back(
            {std::string(30 + g.below(40), static_cast<char>('a' + i % 26)), random_node<Tensor>(g, 1)});
      return f;
    }
    case 5: {  // {"batch": [{"x": tensor, "parts": [...]}, ...], "meta": {}}
      typename node::list batch;
      for (std::uint64_t i = 0, n = g.below(4); i < n; ++i) {
        typename node::list parts;
        for (std::uint64_t j = 0, m = g.below(4); j < m; ++j) parts.push_back(random_node<Tensor>(g, 2));
        typename node::fields entry;
        entry.push_back({"x", random_tensor<Tensor>(g)});
        entry.push_back({"parts", std::move(parts)});
        batch.push_back(std::move(entry));
      }
      typename node::fields f;
      f.push_back({"batch", std::move(batch)});
      f.push_back({"meta", typename node::fields{}});
      return f;
    }
    default:
      return random_node<Tensor>(g, 4);
  }
}

// ---- comparing what arrived with what was expected ----

using redist::test::describe;

// The first difference between got and want; empty if none.
template <class Tensor>
std::string difference(const redist::nested<Tensor>& got, const redist::nested<Tensor>& want) {
  std::string gs, ws;
  std::vector<std::byte> gb, wb;
  describe(got, gs, gb);
  describe(want, ws, wb);
  if (gs != ws) return "structure " + gs.substr(0, 300) + " where " + ws.substr(0, 300) + " was expected";
  if (gb != wb) return "the same structure, other bytes";
  return {};
}

// ---- communicators under test ----

// A view of one MPI communicator: the rank this test expects this process to have in it (computed from the
// world rank by the test's own rule), or -1 when the process is not a member.
struct comm_case {
  std::string name;
  MPI_Comm native = MPI_COMM_NULL;
  int expected_rank = -1;
};

// One dispatch case on comm: item count, root, options and an item per rank drawn from (seed, case).
struct case_params {
  std::size_t items;
  int root;
  redist::dispatch_options options;
};

case_params params_of(std::uint64_t seed, std::uint64_t case_id, int size, int root) {
  draw g{mix(seed, case_id, 0xCA5E)};
  const std::uint64_t n = g.below(static_cast<std::uint64_t>(size) + 3);
  const std::size_t pack[] = {redist::dispatch_options{}.pack_below, 0, 64, SIZE_MAX};
  return {std::min<std::size_t>(n, static_cast<std::size_t>(size)), root, {.pack_below = pack[g.below(4)]}};
}

// Runs one case on comm (every member calls it) and returns this rank's problem, empty if none.
template <class Comm>
std::string run_case(const Comm& comm, std::uint64_t seed, std::uint64_t case_id, const case_params& p) {
  try {
    std::vector<tree> items;
    if (comm.rank() == p.root) {
      for (std::size_t r = 0; r < p.items; ++r)
        items.push_back(make_item(seed, case_id, static_cast<int>(r)));
    } else if (case_id % 3 == 0) {
      items.push_back(make_item(seed, case_id + 1000, 0));  // not the root: ignored
    }
    // Only the root's options count: the others pass the defaults half the time.
    const redist::dispatch_options options =
        comm.rank() == p.root || case_id % 2 == 0 ? p.options : redist::dispatch_options{};
    const tree got = redist::dispatch(comm, items, p.root, options);
    const auto me = static_cast<std::size_t>(comm.rank());
    const tree want = me < p.items ? make_item(seed, case_id, comm.rank()) : tree();
    const std::string d = difference(got, want);
    return d.empty() ? d : "case " + std::to_string(case_id) + ", root " + std::to_string(p.root) + ": " + d;
  } catch (const std::exception& e) {
    return "case " + std::to_string(case_id) + " threw: " + e.what();
  }
}

// Every root, `per_root` random cases each, on one communicator; checked on every rank of the world.
void check_random_cases(const comm_case& c, std::uint64_t seed, int per_root) {
  std::string problem;
  if (c.native != MPI_COMM_NULL) {
    const redist::mpi_communicator comm(c.native);
    if (comm.rank() != c.expected_rank) problem = "the test's communicator has other ranks than it expects";
    for (int root = 0; root < comm.size() && problem.empty(); ++root) {
      for (int k = 0; k < per_root && problem.empty(); ++k) {
        const auto case_id = static_cast<std::uint64_t>(root * 1000 + k);
        problem = run_case(comm, seed, case_id, params_of(seed, case_id, comm.size(), root));
        // A rank that failed leaves the loop; the others must too, or they would wait for it.
        if (!all_ranks(problem.empty(), c.native) && problem.empty()) problem = "another rank failed";
      }
    }
  }
  INFO(c.name << ", this rank: " << (problem.empty() ? "ok" : problem));
  CHECK(all_ranks(problem.empty()));
}

// World rank r is rank size-1-r.
comm_case reversed_case(const redist::test::owned_comm& c) {
  const auto [rank, size] = redist::test::world();
  return {"reversed world", c.get(), size - 1 - rank};
}

// Every world rank but the last (all of them on one rank), numbered reversed and rotated: member i of m (in
// world order) is rank (2m - 1 - i + m / 2) % m.
struct permuted_part {
  int members;
  bool is_member(int world_rank) const { return world_rank < members; }
  int rank_of(int world_rank) const { return (2 * members - 1 - world_rank + members / 2) % members; }
};

permuted_part part_of_world() {
  const int size = redist::test::world().size;
  return {size == 1 ? 1 : size - 1};
}

redist::test::owned_comm split_permuted(const permuted_part& p) {
  const int rank = redist::test::world().rank;
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, p.is_member(rank) ? 0 : MPI_UNDEFINED,
                 p.is_member(rank) ? p.rank_of(rank) : 0, &comm);
  return redist::test::owned_comm(comm);
}

// ---- outcomes of calls that must fail ----

using redist::test::outcome;
using redist::test::outcome_of;

// Collective over comm: every rank caught a redist::error with exactly the expected message.
void check_error(const outcome& o, const std::string& expected, MPI_Comm comm) {
  const bool ok = o.redist_error && o.message == expected;
  INFO("this rank caught: " << o.message);
  INFO("expected: " << expected);
  CHECK(all_ranks(ok, comm));
}

// What the agreement adds to a problem only the root has: which rank that is (nothing at one rank, where
// every rank has it).
std::string on_root(int root, int n) { return n > 1 ? " (on rank " + std::to_string(root) + ")" : ""; }

// After an error: a correct dispatch from `root` on the same communicator works on every rank.
void check_still_works(const redist::mpi_communicator& comm, int root, std::uint64_t seed) {
  const std::string problem = run_case(comm, seed, 77, {static_cast<std::size_t>(comm.size()), root, {}});
  INFO("a correct dispatch after the error, this rank: " << (problem.empty() ? "ok" : problem));
  CHECK(all_ranks(problem.empty(), comm.native()));
}

user::blob blob_of(dtype type, std::vector<std::int64_t> shape) {
  return redist::tensor_traits<user::blob>::allocate(type, shape);
}

}  // namespace

TEST_CASE("dispatch: seeded random items from every root on the world") {
  REDIST_AGREED_SEED(seed);
  check_random_cases({"world", MPI_COMM_WORLD, redist::test::world().rank}, seed, 6);
}

TEST_CASE("dispatch: on a communicator numbered backwards") {
  REDIST_AGREED_SEED(seed);
  const auto reversed = redist::test::reversed_world();
  check_random_cases(reversed_case(reversed), seed + 1, 4);
}

TEST_CASE("dispatch: on a permuted sub-communicator of part of the world (MPI_Comm_split)") {
  REDIST_AGREED_SEED(seed);
  const permuted_part p = part_of_world();
  const auto sub = split_permuted(p);
  const int rank = redist::test::world().rank;
  check_random_cases({"permuted part", sub.get(), p.is_member(rank) ? p.rank_of(rank) : -1}, seed + 2, 4);
}

TEST_CASE("dispatch: on a cached sub-group with permuted ranks (mpi_communicator::group)") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator world(MPI_COMM_WORLD);
  const permuted_part p = part_of_world();
  // The group's rank i is world rank ranks[i].
  std::vector<int> ranks(static_cast<std::size_t>(p.members));
  for (int w = 0; w < p.members; ++w) ranks[static_cast<std::size_t>(p.rank_of(w))] = w;
  const redist::mpi_communicator* sub = world.group(ranks);
  std::string problem;
  if (sub != nullptr) {
    if (sub->rank() != p.rank_of(world.rank())) problem = "the group has other ranks than expected";
    for (int root = 0; root < sub->size() && problem.empty(); ++root) {
      for (int k = 0; k < 3 && problem.empty(); ++k) {
        const auto case_id = static_cast<std::uint64_t>(root * 1000 + k);
        problem = run_case(*sub, seed + 3, case_id, params_of(seed + 3, case_id, sub->size(), root));
        if (!all_ranks(problem.empty(), sub->native()) && problem.empty()) problem = "another rank failed";
      }
    }
  }
  INFO("this rank: " << (problem.empty() ? "ok" : problem));
  CHECK(all_ranks(problem.empty()));
}

TEST_CASE("dispatch: no items, empty items, zero-size tensors, every dtype") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  const int root = n - 1;
  std::string problem;
  // No items at all: every rank, the root too, gets an empty list.
  {
    const tree got = redist::dispatch(comm, {}, root);
    if (!got.is_list() || !got.items().empty()) problem = "no items: not an empty list";
  }
  // Rank r gets: r % 3 == 0 an empty list, 1 empty fields, 2 one zero-size tensor of each dtype in a record.
  auto item = [](int r) -> tree {
    if (r % 3 == 0) return tree();
    if (r % 3 == 1) return tree::fields{};
    tree::fields f;
    for (std::size_t d = 0; d < redist::dtype_count; ++d) {
      const auto type = static_cast<dtype>(d);
      f.push_back({std::string(redist::name(type)), host_tensor(type, {0, static_cast<std::int64_t>(d)})});
    }
    f.push_back({"scalar", host_tensor(dtype::f64, {})});
    return f;
  };
  std::vector<tree> items;
  if (comm.rank() == root)
    for (int r = 0; r < n; ++r) items.push_back(item(r));
  const tree got = redist::dispatch(comm, items, root);
  if (const auto d = difference(got, item(comm.rank())); !d.empty()) problem = d;
  CHECK(all_ranks(problem.empty()));
}

TEST_CASE("dispatch: the root's own item, copied or moved") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int root = comm.size() / 2;
  std::string problem;
  auto first_data = [](const tree& t) {
    const void* p = nullptr;
    t.for_each_tensor([&](const host_tensor& h) {
      if (p == nullptr && h.nbytes() != 0) p = h.data();
    });
    return p;
  };
  auto item = [&](int r) {
    tree::fields f;
    f.push_back({"x", make_item(seed, 5, r)});
    f.push_back({"y", host_tensor(dtype::i32, {3})});
    return tree(std::move(f));
  };
  std::vector<tree> items;
  if (comm.rank() == root)
    for (int r = 0; r < comm.size(); ++r) items.push_back(item(r));

  // From a span: the root's result is a copy in memory of its own.
  tree got = redist::dispatch(comm, items, root);
  if (auto d = difference(got, item(comm.rank())); !d.empty()) problem = "span: " + d;
  if (comm.rank() == root) {
    if (first_data(got) == first_data(items[static_cast<std::size_t>(root)])) problem = "span: not a copy";
    got.for_each_tensor([](host_tensor& h) {
      for (auto& b : h.bytes()) b = ~b;
    });
    if (auto d = difference(items[static_cast<std::size_t>(root)], item(root)); !d.empty())
      problem = "span: the item changed with the copy";
  }

  // From a vector by rvalue: the root's result is its own item, moved; the others' items are untouched.
  const void* before = comm.rank() == root ? first_data(items[static_cast<std::size_t>(root)]) : nullptr;
  tree moved = redist::dispatch(comm, std::move(items), root);
  if (auto d = difference(moved, item(comm.rank())); !d.empty()) problem = "moved: " + d;
  if (comm.rank() == root) {
    if (first_data(moved) != before) problem = "moved: the root's item was copied, not moved";
    for (int r = 0; r < comm.size(); ++r) {
      // NOLINTNEXTLINE(bugprone-use-after-move): dispatch moves only the root's own item out
      if (r != root && !difference(items[static_cast<std::size_t>(r)], item(r)).empty())
        problem = "moved: item " + std::to_string(r) + " changed";
    }
  }
  INFO("this rank: " << (problem.empty() ? "ok" : problem));
  CHECK(all_ranks(problem.empty()));
}

TEST_CASE("dispatch: back to back from changing roots, no barrier between") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  std::vector<std::string> problems;
  for (int i = 0; i < 4 * comm.size(); ++i) {
    const int root = (i * 5 + 1) % comm.size();
    const auto case_id = static_cast<std::uint64_t>(5000 + i);
    const std::string p = run_case(comm, seed, case_id, params_of(seed, case_id, comm.size(), root));
    if (!p.empty()) problems.push_back(p);
  }
  INFO("this rank: " << (problems.empty() ? "ok" : problems.front()));
  CHECK(all_ranks(problems.empty()));
}

TEST_CASE("dispatch: a user's tensor type") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  std::string problem;
  for (int root = 0; root < comm.size(); ++root) {
    std::vector<redist::nested<user::blob>> items;
    if (comm.rank() == root)
      for (int r = 0; r < comm.size(); ++r) items.push_back(make_item<user::blob>(seed, 9000, r));
    const auto got = redist::dispatch<user::blob>(comm, items, root);
    if (auto d = difference(got, make_item<user::blob>(seed, 9000, comm.rank())); !d.empty()) problem = d;
  }
  CHECK(all_ranks(problem.empty()));
}

TEST_CASE("dispatch: one process (self_communicator)") {
  const redist::self_communicator self;
  std::vector<tree> items;
  items.push_back(make_item(1, 2, 0));
  CHECK(difference(redist::dispatch(self, items, 0), make_item(1, 2, 0)).empty());
  CHECK(difference(redist::dispatch(self, std::move(items), 0), make_item(1, 2, 0)).empty());
  const tree none = redist::dispatch(self, {}, 0);
  CHECK((none.is_list() && none.items().empty()));
  std::vector<tree> two(2);
  CHECK_THROWS_WITH_AS(redist::dispatch(self, two, 0),
                       "redist::dispatch: 2 items for a communicator of 1 ranks; at most one item per rank",
                       redist::error);
  CHECK_THROWS_WITH_AS(redist::dispatch(self, {}, 1),
                       "redist::dispatch: root 1 is out of range for a communicator of 1 ranks",
                       redist::error);
}

TEST_CASE("dispatch errors: a root out of range") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  for (const int root : {-1, n, n + 5}) {
    std::vector<tree> items(static_cast<std::size_t>(n));
    const outcome o = outcome_of([&] { (void)redist::dispatch(comm, items, root); });
    check_error(o,
                "redist::dispatch: root " + std::to_string(root) + " is out of range for a communicator of " +
                    std::to_string(n) + " ranks",
                comm.native());
    check_still_works(comm, n - 1, seed);
  }
}

TEST_CASE("dispatch errors: more items than ranks") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  for (int root = 0; root < n; root += std::max(1, n / 3)) {
    std::vector<tree> items;
    if (comm.rank() == root)
      for (int r = 0; r <= n; ++r) items.push_back(make_item(seed, 11, r));
    const outcome o = outcome_of([&] { (void)redist::dispatch(comm, items, root); });
    check_error(o,
                "redist::dispatch: " + std::to_string(n + 1) + " items for a communicator of " +
                    std::to_string(n) + " ranks; at most one item per rank" + on_root(root, n),
                comm.native());
    check_still_works(comm, root, seed);
  }
}

TEST_CASE("dispatch errors: bad tensors on the root, in any item") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  using node = redist::nested<user::blob>;
  // Good items with large tensors (each of them would be sent on its own), one of which is spoilt.
  auto good = [](int r) {
    node::fields f;
    f.push_back({"input_ids", blob_of(dtype::i64, {5000 + r})});
    f.push_back({"images", node::list{blob_of(dtype::f32, {64, 64}), blob_of(dtype::f32, {32, 32})}});
    return node(std::move(f));
  };
  struct spoil {
    const char* what;
    void (*apply)(node&);
    std::string message_tail;
  };
  const spoil spoils[] = {
      {"not contiguous", [](node& x) { x.named()[1].value.items()[1].tensor().contiguous = false; },
       "tensor 'images[1]' is not contiguous"},
      {"a negative extent",
       [](node& x) {
         x.named()[0].value.tensor().shape = {4, -2};
       },
       "tensor 'input_ids' has a negative extent or a size that overflows std::size_t"},
      {"no data", [](node& x) { x.named()[1].value.items()[0].tensor().storage.reset(); },
       "tensor 'images[0]' has 16384 bytes but no data"},
      {"more bytes than size_t holds",
       [](node& x) {
         x.named()[0].value.tensor().shape = {std::int64_t{1} << 62, 4};
       },
       "tensor 'input_ids' has a negative extent or a size that overflows std::size_t"},
  };
  for (const spoil& s : spoils) {
    for (const int bad_item : {0, n - 1}) {
      const int root = (bad_item + 1) % n;  // the bad item is the root's own or another rank's
      INFO(std::string(s.what) << ", item " << bad_item << ", root " << root);
      std::vector<node> items;
      if (comm.rank() == root) {
        for (int r = 0; r < n; ++r) items.push_back(good(r));
        s.apply(items[static_cast<std::size_t>(bad_item)]);
      }
      const outcome o = outcome_of([&] { (void)redist::dispatch<user::blob>(comm, items, root); });
      check_error(
          o, "redist::dispatch: item " + std::to_string(bad_item) + ", " + s.message_tail + on_root(root, n),
          comm.native());
      check_still_works(comm, root, seed);
    }
  }
}

TEST_CASE("dispatch errors: an item nested deeper than a schema may be") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  const int root = n > 1 ? 1 : 0;
  const int bad_item = n - 1;
  // Fields named "level" around each other, 257 deep: the error text (with the path) exceeds the root's
  // first message, so it reaches the receivers in two.
  auto deep = [] {
    tree x = host_tensor(dtype::u8, {1});
    for (int d = 0; d <= redist::detail::max_nested_depth; ++d) {
      tree::fields f;
      f.push_back({"level", std::move(x)});
      x = tree(std::move(f));
    }
    return x;
  };
  std::string path;
  for (int d = 0; d < redist::detail::max_nested_depth + 1; ++d) path += d == 0 ? "level" : ".level";
  std::vector<tree> items;
  if (comm.rank() == root) {
    for (int r = 0; r < n; ++r) items.push_back(r == bad_item ? deep() : make_item(seed, 12, r));
  }
  const outcome o = outcome_of([&] { (void)redist::dispatch(comm, items, root); });
  const std::string expected = "redist::dispatch: item " + std::to_string(bad_item) +
                               " nests deeper than 256 levels at '" + path + "'";
  REQUIRE(expected.size() > redist::detail::dispatch_inline_bytes);  // same on every rank: no hang
  check_error(o, expected + on_root(root, n), comm.native());
  check_still_works(comm, root, seed);
}

// ---- a receiver's defences against first messages no sound root sends ----

// Rank 0 sends rank 1 the first message `head` says, its schema inline, and nothing else; rank 1 receives it
// as dispatch's receiver does and must refuse it with `expected` before it allocates or receives anything
// more: the error is rank 1's alone (the root's messages passed the agreement), so no other rank waits.
void check_refused(const redist::detail::dispatch_header& head, const std::vector<std::byte>& schema,
                   const std::string& expected) {
  const auto world = redist::test::world();
  if (world.size < 2) return;
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  std::string got = "(no error)";
  if (world.rank == 0) {
    std::vector<std::byte> message(redist::detail::dispatch_head_bytes);
    redist::detail::store_bytes(message.data(), head);
    std::copy(schema.begin(), schema.end(), message.begin() + sizeof head);
    // On the communicator's own (duplicated) handle, where its receiver listens.
    MPI_Send(message.data(), static_cast<int>(message.size()), MPI_BYTE, 1, redist::detail::dispatch_tag,
             comm.native());
    got = expected;
  } else if (world.rank == 1) {
    std::uint64_t received = 0;
    const auto o = redist::test::outcome_of([&] {
      (void)redist::detail::dispatch_receive<host_tensor>(comm, 0, redist::host_space{}, received);
    });
    got = o.redist_error ? o.message : "(not a redist::error) " + o.message;
  } else {
    got = expected;
  }
  CHECK(all_ranks(got == expected));
  if (world.rank == 1) CHECK(got == expected);
}

TEST_CASE("dispatch: a receiver refuses a corrupt first message before allocating from it") {
  using redist::detail::dispatch_status;
  const std::vector<std::byte> small = redist::encode_schema(tree(host_tensor(dtype::u8, {4, 2})));
  SUBCASE("packed bytes beyond the item's tensors") {
    check_refused(
        {dispatch_status::item, small.size(), 9, 16384, 8}, small,
        "redist::dispatch: the first message from root 0 is corrupt: 5 bytes of schema and 9 packed "
        "for 8 bytes of tensors");
  }
  SUBCASE("a schema declaring 7.5 TiB where the header says 8 bytes") {
    // Encoded from a shape alone: nothing of that size is ever allocated.
    const auto huge = redist::encode_schema(
        redist::nested<user::blob>(user::blob{dtype::f32, {std::int64_t{15} << 37}, nullptr, true}));
    check_refused(
        {dispatch_status::item, huge.size(), 0, 16384, 8}, huge,
        "redist::decode_schema: the f32 tensor [2061584302080] at byte 1 takes 8246337208320 bytes, "
        "more than the 8 bytes the schema may still declare");
  }
  SUBCASE("a schema whose tensors are fewer bytes than the header says") {
    check_refused(
        {dispatch_status::item, small.size(), 0, 4, 1000}, small,
        "redist::dispatch: the schema from root 0 declares 8 bytes of tensors, 0 of them packed, where "
        "its header says 1000 and 0");
  }
}
