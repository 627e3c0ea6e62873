// Tests of redist::sample_store: add / holds / find / held, collect checked byte for byte against a plain
// model of the samples, the metadata rule, metadata_batch, every error with its message, and the strong
// guarantee of add() (also when an allocation fails part way, through a replaced operator new), the id table
// of the index and the allocations indexing a batch makes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/id_table.hpp"

#include "failing_allocations.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;
using redist::sample_store;
using batch = redist::sequence_batch<host_tensor>;
using field = batch::field;
using store = sample_store<host_tensor>;

struct key_spec {
  std::string name;
  dtype type;
  std::vector<std::int64_t> trailing;
  std::size_t row_bytes() const {
    std::size_t n = redist::size_of(type);
    for (auto e : trailing) n *= static_cast<std::size_t>(e);
    return n;
  }
};

// The plain model: per (id, key), its sequence lengths and bytes; per id, its metadata strings.
struct model {
  std::map<std::string, key_spec> keys;
  std::map<std::pair<sample_id, std::string>, std::vector<std::int64_t>> lens;
  std::map<std::pair<sample_id, std::string>, std::vector<unsigned char>> bytes;

  void add_key(const key_spec& k) { keys[k.name] = k; }
  // Lengths as given; bytes derived from (id, key, index) so that every sample's bytes differ.
  void add(sample_id id, const std::string& key, std::vector<std::int64_t> l) {
    std::int64_t tokens = 0;
    for (auto x : l) tokens += x;
    std::vector<unsigned char> b(static_cast<std::size_t>(tokens) * keys.at(key).row_bytes());
    for (std::size_t i = 0; i < b.size(); ++i)
      b[i] =
          static_cast<unsigned char>(id * 31 + key.size() * 7 + static_cast<unsigned char>(key[0]) + i * 13);
    lens[{id, key}] = std::move(l);
    bytes[{id, key}] = std::move(b);
  }
};

// A batch of (ids, keys) from the model, tensors packed the obvious way.
batch make_batch(const model& m, const std::vector<sample_id>& ids, const std::vector<std::string>& keys,
                 redist::metadata_map meta = {}, bool with_data = true) {
  std::vector<field> fields;
  for (const auto& k : keys) {
    const key_spec& spec = m.keys.at(k);
    std::vector<std::vector<std::int64_t>> lens;
    std::vector<unsigned char> bytes;
    std::int64_t tokens = 0;
    for (sample_id id : ids) {
      lens.push_back(m.lens.at({id, k}));
      for (auto l : lens.back()) tokens += l;
      const auto& b = m.bytes.at({id, k});
      bytes.insert(bytes.end(), b.begin(), b.end());
    }
    field f{k, spec.type, spec.trailing, redist::seqlen_table(lens), std::nullopt};
    if (with_data) {
      std::vector<std::int64_t> shape{tokens};
      shape.insert(shape.end(), spec.trailing.begin(), spec.trailing.end());
      host_tensor t(spec.type, shape);
      REQUIRE(t.nbytes() == bytes.size());
      if (!bytes.empty()) std::memcpy(t.data(), bytes.data(), bytes.size());
      f.data = std::move(t);
    }
    fields.push_back(std::move(f));
  }
  return batch(ids, std::move(fields), std::move(meta));
}

// Checks a collected batch against the model: ids and keys in the requested order, seqlens, and each key's
// tensor equal to the concatenation of the model's bytes.
void check_collected(const batch& b, const model& m, const std::vector<sample_id>& ids,
                     const std::vector<std::string>& keys, bool with_data = true) {
  REQUIRE(std::vector<sample_id>(b.ids().begin(), b.ids().end()) == ids);
  REQUIRE(b.fields().size() == keys.size());
  CHECK(b.has_data() == (with_data && !keys.empty()));
  for (std::size_t k = 0; k < keys.size(); ++k) {
    const auto& f = b.fields()[k];
    const key_spec& spec = m.keys.at(keys[k]);
    CAPTURE(keys[k]);
    CHECK(f.name == keys[k]);
    CHECK(f.dtype == spec.type);
    CHECK(f.trailing_shape == spec.trailing);
    std::vector<unsigned char> expected;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto got = f.seqlens[i];
      CHECK(std::vector<std::int64_t>(got.begin(), got.end()) == m.lens.at({ids[i], keys[k]}));
      const auto& sb = m.bytes.at({ids[i], keys[k]});
      expected.insert(expected.end(), sb.begin(), sb.end());
    }
    if (!with_data) continue;
    const host_tensor& t = *f.data;
    REQUIRE(t.nbytes() == expected.size());
    CHECK((expected.empty() || std::memcmp(t.data(), expected.data(), expected.size()) == 0));
  }
}

// Everything observable about a store's contents.
std::string dump(const store& s) {
  std::string out = std::to_string(s.pairs()) + ":";
  for (const auto& [id, key] : s.held()) out += " " + std::to_string(id) + key;
  return out;
}

using held_list = std::vector<std::pair<sample_id, std::string>>;

// ids 10, 4 and 7; keys x (i32[2]), y (u8[]) and z (f64[]); batch A holds x, y of 10, 4; B holds x, y of 7;
// C holds z of 10, 4.
model small_model() {
  model m;
  m.add_key({"x", dtype::i32, {2}});
  m.add_key({"y", dtype::u8, {}});
  m.add_key({"z", dtype::f64, {}});
  m.add(10, "x", {2, 1});
  m.add(4, "x", {});
  m.add(7, "x", {0, 3});
  m.add(10, "y", {5});
  m.add(4, "y", {1});
  m.add(7, "y", {2});
  m.add(10, "z", {1});
  m.add(4, "z", {2, 0});
  return m;
}

batch batch_a(const model& m) {
  return make_batch(m, {10, 4}, {"x", "y"}, {{"tag", {"a10", "a4"}}, {"extra", {"e10", "e4"}}});
}
batch batch_b(const model& m) { return make_batch(m, {7}, {"x", "y"}, {{"tag", {"b7"}}}); }
batch batch_c(const model& m) {
  return make_batch(m, {4, 10}, {"z"}, {{"tag", {"c4", "c10"}}, {"extra", {"x4", "x10"}}});
}

TEST_CASE("sample_store: add, holds, find with stable locations, pairs, held") {
  const model m = small_model();
  store s(batch_a(m));
  CHECK(s.pairs() == 4);
  const auto first = s.find(4, "y");
  REQUIRE(first.has_value());
  s.add(batch_b(m));
  s.add(batch_c(m));
  CHECK(s.pairs() == 8);
  CHECK(s.held() ==
        held_list{{4, "x"}, {4, "y"}, {4, "z"}, {7, "x"}, {7, "y"}, {10, "x"}, {10, "y"}, {10, "z"}});

  struct where {
    sample_id id;
    std::string key;
    sample_id first_id;  // identifies the batch: its first id
    std::size_t position;
  };
  for (const auto& w : std::vector<where>{{10, "x", 10, 0},
                                          {4, "x", 10, 1},
                                          {4, "y", 10, 1},
                                          {7, "y", 7, 0},
                                          {4, "z", 4, 0},
                                          {10, "z", 4, 1}}) {
    CAPTURE(w.id);
    CAPTURE(w.key);
    CHECK(s.holds(w.id, w.key));
    const auto loc = s.find(w.id, w.key);
    REQUIRE(loc.has_value());
    CHECK(loc->batch->ids()[0] == w.first_id);
    CHECK(loc->position == w.position);
    CHECK(loc->batch->ids()[loc->position] == w.id);
    CHECK(loc->batch->has_key(w.key));
  }
  // The batch found before two more adds is still where it was.
  CHECK(s.find(4, "y")->batch == first->batch);
  CHECK(s.find(10, "x")->batch == first->batch);
  CHECK_FALSE(s.holds(7, "z"));
  CHECK_FALSE(s.holds(5, "x"));
  CHECK_FALSE(s.holds(4, "w"));
  CHECK_FALSE(s.find(7, "z").has_value());

  // A moved store keeps its locations.
  const batch* a = s.find(4, "x")->batch;
  store moved(std::move(s));
  CHECK(moved.find(4, "x")->batch == a);
  CHECK(moved.pairs() == 8);

  // An empty store, and a batch without keys, hold nothing.
  store e;
  CHECK(e.pairs() == 0);
  CHECK(e.held().empty());
  e.add(batch({1, 2}, {}));
  CHECK(e.pairs() == 0);
  CHECK_FALSE(e.holds(1, "x"));
}

TEST_CASE("sample_store: collect packs the requested order byte for byte, with the metadata rule") {
  const model m = small_model();
  store s;
  s.add(batch_a(m));
  s.add(batch_b(m));
  s.add(batch_c(m));

  SUBCASE("across two batches: metadata names both have") {
    const std::vector<sample_id> ids{7, 10, 4};
    const batch b = s.collect(ids, {"y", "x"});
    check_collected(b, m, ids, {"y", "x"});
    CHECK(b.metadata() == redist::metadata_map{{"tag", {"b7", "a10", "a4"}}});
  }
  SUBCASE("one batch, in stored order (one copy) and reversed") {
    check_collected(s.collect({10, 4}, {"x"}), m, {10, 4}, {"x"});
    const batch b = s.collect({4, 10}, {"x", "y"});
    check_collected(b, m, {4, 10}, {"x", "y"});
    CHECK(b.metadata() == redist::metadata_map{{"tag", {"a4", "a10"}}, {"extra", {"e4", "e10"}}});
  }
  SUBCASE("values come from the batch holding the first key") {
    const batch zx = s.collect({4, 10}, {"z", "x"});
    check_collected(zx, m, {4, 10}, {"z", "x"});
    CHECK(zx.metadata() == redist::metadata_map{{"tag", {"c4", "c10"}}, {"extra", {"x4", "x10"}}});
    const batch xz = s.collect({4, 10}, {"x", "z"});
    check_collected(xz, m, {4, 10}, {"x", "z"});
    CHECK(xz.metadata() == redist::metadata_map{{"tag", {"a4", "a10"}}, {"extra", {"e4", "e10"}}});
  }
  SUBCASE("no ids, no keys") {
    const batch none = s.collect({}, {"z", "y"});
    check_collected(none, m, {}, {"z", "y"});
    CHECK(none.total_tokens("z") == 0);
    CHECK(none.metadata().empty());
    const batch bare = s.collect({4, 99}, {});
    CHECK(std::vector<sample_id>(bare.ids().begin(), bare.ids().end()) == std::vector<sample_id>{4, 99});
    CHECK(bare.fields().empty());
    CHECK(bare.metadata().empty());
  }
  SUBCASE("errors") {
    CHECK_THROWS_WITH_AS(s.collect({4, 7, 10}, {"z", "x"}),
                         "redist::sample_store::collect: id 7, key 'z' is not held", redist::error);
    CHECK_THROWS_WITH_AS(s.collect({4, 99}, {"nope", "x"}),
                         "redist::sample_store::collect: id 4, key 'nope' is not held", redist::error);
    CHECK_THROWS_WITH_AS(s.collect({}, {"x", "nope"}),
                         "redist::sample_store::collect: key 'nope' is not in the store", redist::error);
    CHECK_THROWS_WITH_AS(s.collect({4, 7, 7, 4}, {"x"}),
                         "redist::sample_store::collect: id 7 is requested twice", redist::error);
    CHECK_THROWS_WITH_AS(s.collect({4}, {"x", "y", "x"}),
                         "redist::sample_store::collect: key 'x' is requested twice", redist::error);
  }
  // The store's batches are untouched by collecting.
  check_collected(*s.find(10, "x")->batch, m, {10, 4}, {"x", "y"});
}

TEST_CASE("sample_store: add errors name the id and key, and leave the store unchanged") {
  model m = small_model();
  m.add_key({"w", dtype::f16, {3}});
  m.add(5, "w", {1});
  m.add(4, "w", {2});
  m.add(5, "y", {1});
  store s;
  s.add(batch_a(m));
  s.add(batch_b(m));
  const std::string before = dump(s);

  SUBCASE("a pair held already; keys in the batch's order, then ids") {
    CHECK_THROWS_WITH_AS(s.add(make_batch(m, {5, 4}, {"w", "y"})),
                         "redist::sample_store::add: id 4, key 'y' is already held", redist::error);
    CHECK_THROWS_WITH_AS(s.add(make_batch(m, {7, 10}, {"x", "y"})),
                         "redist::sample_store::add: id 7, key 'x' is already held", redist::error);
    CHECK_THROWS_WITH_AS(s.add(make_batch(m, {7, 10}, {"y", "x"})),
                         "redist::sample_store::add: id 7, key 'y' is already held", redist::error);
    CHECK_FALSE(s.holds(5, "w"));
  }
  SUBCASE("another dtype or trailing shape") {
    m.keys["x"].type = dtype::i64;
    m.add(99, "x", {1});
    CHECK_THROWS_WITH_AS(s.add(make_batch(m, {99}, {"x"})),
                         "redist::sample_store::add: key 'x' is i64[2] in the batch but i32[2] in the store",
                         redist::error);
    m.keys["y"].trailing = {1, 1};
    m.add(99, "y", {1});
    CHECK_THROWS_WITH_AS(s.add(make_batch(m, {99}, {"y"})),
                         "redist::sample_store::add: key 'y' is u8[1, 1] in the batch but u8[] in the store",
                         redist::error);
  }
  SUBCASE("data in some batches, not in others") {
    CHECK_THROWS_WITH_AS(s.add(make_batch(m, {5}, {"w"}, {}, false)),
                         "redist::sample_store::add: the batch is metadata only but the store holds data",
                         redist::error);
    store meta_only(make_batch(m, {5}, {"w"}, {}, false));
    CHECK_THROWS_WITH_AS(meta_only.add(make_batch(m, {4}, {"w"})),
                         "redist::sample_store::add: the batch holds data but the store is metadata only",
                         redist::error);
  }
  CHECK(dump(s) == before);
  s.add(make_batch(m, {5, 4}, {"w"}));
  CHECK(s.pairs() == 8);
}

TEST_CASE("sample_store: add is all or nothing when an allocation fails part way") {
  const model m = small_model();
  store s(batch_b(m));
  const std::string before = dump(s);
  const batch a = batch_a(m);
  const batch c = batch_c(m);
  for (const batch* b : {&a, &c}) {
    bool done = false;
    for (long n = 0; !done; ++n) {
      CAPTURE(n);
      batch copy = *b;
      const std::string now = dump(s);
      try {
        const failing_allocations armed(n);
        s.add(std::move(copy));
        done = true;
      } catch (const std::bad_alloc&) {
      }
      if (done) continue;
      CHECK(dump(s) == now);
      // A key the failed batch brought is gone too.
      if (b == &c)
        CHECK_THROWS_WITH_AS(s.collect({}, {"z"}),
                             "redist::sample_store::collect: key 'z' is not in the store", redist::error);
      REQUIRE(n < 1000);
    }
  }
  CHECK(before != dump(s));
  CHECK(s.held() ==
        held_list{{4, "x"}, {4, "y"}, {4, "z"}, {7, "x"}, {7, "y"}, {10, "x"}, {10, "y"}, {10, "z"}});
  check_collected(s.collect({4, 7, 10}, {"x", "y"}), m, {4, 7, 10}, {"x", "y"});
  check_collected(s.collect({10, 4}, {"z"}), m, {10, 4}, {"z"});
}

TEST_CASE("sample_store: metadata_batch, and a store of tensors it cannot allocate") {
  const model m = small_model();
  store s;
  s.add(batch_a(m));
  s.add(batch_b(m));
  const batch b = s.metadata_batch();
  check_collected(b, m, {4, 7, 10}, {"x", "y"}, false);
  CHECK(b.metadata() == redist::metadata_map{{"tag", {"a4", "b7", "a10"}}});

  s.add(batch_c(m));
  CHECK_THROWS_WITH_AS(
      s.metadata_batch(),
      "redist::sample_store::metadata_batch: id 7 has keys 'x', 'y' but id 4 has 'x', 'y', 'z'; "
      "a metadata batch needs the same keys for every id",
      redist::error);
  CHECK(store().metadata_batch().empty());
  // The smallest id may be the one that lacks a key.
  model m2 = small_model();
  m2.add(7, "z", {3});
  store s2;
  s2.add(batch_a(m2));
  s2.add(make_batch(m2, {7}, {"x", "y", "z"}));
  CHECK_THROWS_WITH_AS(
      s2.metadata_batch(),
      "redist::sample_store::metadata_batch: id 7 has keys 'x', 'y', 'z' but id 4 has 'x', 'y'; "
      "a metadata batch needs the same keys for every id",
      redist::error);

  // Views cannot allocate, so there is no collect(), but everything else works.
  batch a = batch_a(m);
  std::vector<redist::key_field<redist::host_tensor_view>> fields;
  for (const auto& k : {"x", "y"}) {
    const auto& f = a.at(k);
    fields.push_back({f.name, f.dtype, f.trailing_shape, f.seqlens, redist::host_tensor_view(a.data(k))});
  }
  sample_store<redist::host_tensor_view> views(
      redist::sequence_batch<redist::host_tensor_view>({10, 4}, std::move(fields), a.metadata()));
  CHECK(views.holds(4, "y"));
  CHECK(views.pairs() == 4);
  check_collected(views.metadata_batch(), m, {4, 10}, {"x", "y"}, false);
}

TEST_CASE("sample_store: random batches against the model") {
  const std::uint64_t seed = std::random_device{}();
  std::cout << "sample_store random: seed " << seed << "\n";
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const std::vector<key_spec> specs = {{"input_ids", dtype::i64, {}},
                                       {"logprobs", dtype::f32, {}},
                                       {"hidden", dtype::bf16, {3, 2}},
                                       {"mask", dtype::boolean, {4}},
                                       {"empty", dtype::f64, {0}}};
  for (int round = 0; round < 30; ++round) {
    CAPTURE(round);
    model m;
    for (const auto& k : specs) m.add_key(k);
    const std::size_t n = 1 + rng() % 60;
    std::vector<sample_id> ids;
    while (ids.size() < n) {
      const sample_id id = rng() % 2 ? rng() : rng() % 200;
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    }
    for (sample_id id : ids)
      for (const auto& k : specs) {
        std::vector<std::int64_t> l(rng() % 4);
        for (auto& x : l) x = static_cast<std::int64_t>(rng() % 7);
        m.add(id, k.name, l);
      }
    // Chunks of samples, each chunk's keys split among up to three batches; added in random order.
    std::vector<batch> batches;
    for (std::size_t begin = 0; begin < n;) {
      const std::size_t end = std::min(n, begin + 1 + rng() % 12);
      const std::vector<sample_id> chunk(ids.begin() + static_cast<std::ptrdiff_t>(begin),
                                         ids.begin() + static_cast<std::ptrdiff_t>(end));
      std::vector<std::vector<std::string>> groups(1 + rng() % 3);
      for (const auto& k : specs) groups[rng() % groups.size()].push_back(k.name);
      for (auto& g : groups) {
        if (g.empty()) continue;
        std::shuffle(g.begin(), g.end(), rng);
        redist::metadata_map meta{{"tag", {}}};
        for (sample_id id : chunk) meta["tag"].push_back("t" + std::to_string(id));
        batches.push_back(make_batch(m, chunk, g, std::move(meta)));
      }
      begin = end;
    }
    std::shuffle(batches.begin(), batches.end(), rng);
    store s;
    for (auto& b : batches) s.add(std::move(b));
    REQUIRE(s.pairs() == n * specs.size());
    held_list expected_held;
    for (const auto& [key, lens] : m.lens) expected_held.emplace_back(key.first, key.second);
    std::sort(expected_held.begin(), expected_held.end());
    CHECK(s.held() == expected_held);

    for (int q = 0; q < 20; ++q) {
      std::vector<sample_id> want = ids;
      std::shuffle(want.begin(), want.end(), rng);
      want.resize(rng() % (n + 1));
      if (q % 4 == 0) std::sort(want.begin(), want.end());
      std::vector<std::string> keys;
      for (const auto& k : specs)
        if (rng() % 2) keys.push_back(k.name);
      std::shuffle(keys.begin(), keys.end(), rng);
      const batch b = s.collect(want, keys);
      check_collected(b, m, want, keys);
      if (!keys.empty() && !want.empty()) {
        std::vector<std::string> tags;
        for (sample_id id : want) tags.push_back("t" + std::to_string(id));
        CHECK(b.metadata() == redist::metadata_map{{"tag", tags}});
      }
    }
    std::vector<sample_id> sorted = ids;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::string> names;
    for (const auto& k : specs) names.push_back(k.name);
    std::sort(names.begin(), names.end());
    check_collected(s.metadata_batch(), m, sorted, names, false);
  }
}

}  // namespace

TEST_CASE("id_table: every id inserted is found with its value, others are not, across growth") {
  redist::detail::id_table<std::uint64_t> t;
  CHECK(t.find(0) == nullptr);
  std::mt19937_64 rng(20261208);
  std::set<std::uint64_t> inserted;
  for (std::size_t round = 0; round < 6; ++round) {
    const std::size_t more = 1 + round * 700;
    t.reserve(more);
    for (std::size_t i = 0; i < more; ++i) {
      // Consecutive ids, as batches number them, and ids anywhere in the range.
      const std::uint64_t id = i % 2 == 0 ? round * 100000 + i : rng();
      if (!inserted.insert(id).second) continue;
      t.insert(id, ~id);
    }
  }
  CHECK(t.size() == inserted.size());
  for (const std::uint64_t id : inserted) {
    const std::uint64_t* v = t.find(id);
    REQUIRE(v != nullptr);
    CHECK(*v == ~id);
  }
  for (std::size_t i = 0; i < 1000; ++i) {
    const std::uint64_t id = rng();
    CHECK(t.contains(id) == (inserted.count(id) != 0));
  }
  std::set<std::uint64_t> visited;
  t.for_each([&](std::uint64_t id, std::uint64_t v) {
    CHECK(v == ~id);
    visited.insert(id);
  });
  CHECK(visited == inserted);
}

// How many allocations borrowing `b` makes, counted through the replaced operator new.
long allocations_of_borrow(const batch& b) {
  store s;
  constexpr long budget = 1L << 40;
  {
    const failing_allocations armed(budget);
    s.borrow(b);
    return budget - allocations_left;
  }
}

TEST_CASE("sample_store: indexing a batch allocates per key, not per sample") {
  model m;
  m.add_key({"x", dtype::i32, {2}});
  m.add_key({"a key whose name is too long to be stored in the string", dtype::u8, {}});
  std::vector<sample_id> ids;
  for (sample_id id = 0; id < 5000; ++id) {
    ids.push_back(id * 7 + 3);
    for (const auto& [name, spec] : m.keys) m.add(ids.back(), name, {static_cast<std::int64_t>(id % 3)});
  }
  const std::vector<std::string> keys{"x", "a key whose name is too long to be stored in the string"};
  const long few = allocations_of_borrow(make_batch(m, {ids.begin(), ids.begin() + 4}, keys));
  const long many = allocations_of_borrow(make_batch(m, ids, keys));
  CHECK(few == many);
  CHECK(many <= 12);  // the batch's entry, the list of new keys, per key its node, name, shape and table
  store s;
  const batch all = make_batch(m, ids, keys);
  s.borrow(all);
  for (const sample_id id : ids) {
    REQUIRE(s.holds(id, "x"));
    CHECK(all.ids()[s.find(id, "x")->position] == id);
  }
  CHECK(!s.holds(1, "x"));
}
