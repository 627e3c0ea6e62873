// Tests of redist::storage_tracker: the builder's owners, sizes and holders, every error with its message,
// from_batches over metadata-only batches, and trackers that do not depend on the order of their records.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace {

using redist::dtype;
using redist::sample_id;
using redist::storage_tracker;
using batch = redist::sequence_batch<redist::host_tensor>;
using field = batch::field;
using entry = std::pair<std::size_t, std::size_t>;

std::vector<int> to_vector(std::span<const int> s) { return {s.begin(), s.end()}; }
std::vector<sample_id> to_vector(std::span<const sample_id> s) { return {s.begin(), s.end()}; }
std::vector<std::string> to_vector(std::span<const std::string> s) { return {s.begin(), s.end()}; }

// Tracker positions of (id, key); REQUIREs that both exist.
entry at(const storage_tracker& t, sample_id id, const std::string& key) {
  const auto i = t.find_id(id);
  const auto k = t.find_key(key);
  REQUIRE(i.has_value());
  REQUIRE(k.has_value());
  return {*i, *k};
}

// The owner, size and holders of one (id, key), as the tests write them out.
struct expected_entry {
  sample_id id;
  std::string key;
  int owner;
  std::uint64_t bytes;
  std::vector<int> holders;
};

void check_entry(const storage_tracker& t, const expected_entry& e) {
  CAPTURE(e.id);
  CAPTURE(e.key);
  const auto [i, k] = at(t, e.id, e.key);
  CHECK(t.has(i, k));
  CHECK(t.owner(i, k) == e.owner);
  CHECK(t.bytes(i, k) == e.bytes);
  CHECK(to_vector(t.holders(i, k)) == e.holders);
  for (int r = 0; r < t.ranks(); ++r) {
    CAPTURE(r);
    CHECK(t.holds(r, i, k) == std::binary_search(e.holders.begin(), e.holders.end(), r));
  }
}

// ---- builder ----

TEST_CASE("storage_tracker: owner, bytes, holders ascending with the owner, duplicates collapsed") {
  storage_tracker::builder b(5);
  // Keys first seen as "y" then "x"; ids out of order.
  b.own(3, 40, "y", 12).own(2, 40, "x", 100).own(0, 7, "x", 16);
  b.hold(4, 40, "x").hold(0, 40, "x").hold(4, 40, "x");  // rank 4 twice
  b.hold(2, 40, "x");                                    // the owner again
  b.own(2, 40, "x", 100);                                // the same ownership again, same size
  b.hold(1, 7, "x").hold(1, 40, "y");
  const storage_tracker t = std::move(b).build();

  CHECK(t.ranks() == 5);
  CHECK(to_vector(t.ids()) == std::vector<sample_id>{7, 40});
  CHECK(to_vector(t.keys()) == std::vector<std::string>{"x", "y"});
  check_entry(t, {7, "x", 0, 16, {0, 1}});
  check_entry(t, {40, "x", 2, 100, {0, 2, 4}});
  check_entry(t, {40, "y", 3, 12, {1, 3}});

  // Id 7 has no key y: no owner, no holder.
  const auto [i7, ky] = at(t, 7, "y");
  CHECK_FALSE(t.has(i7, ky));
  CHECK(t.owner(i7, ky) == -1);
  CHECK(t.holders(i7, ky).empty());
  for (int r = 0; r < 5; ++r) CHECK_FALSE(t.holds(r, i7, ky));

  // Positions: ids ascending, keys by name.
  CHECK(t.find_id(7) == std::optional<std::size_t>(0));
  CHECK(t.find_id(40) == std::optional<std::size_t>(1));
  CHECK_FALSE(t.find_id(8).has_value());
  CHECK_FALSE(t.find_id(0).has_value());
  CHECK_FALSE(t.find_id(41).has_value());
  CHECK(t.find_key("x") == std::optional<std::size_t>(0));
  CHECK(t.find_key("y") == std::optional<std::size_t>(1));
  CHECK_FALSE(t.find_key("").has_value());
  CHECK_FALSE(t.find_key("w").has_value());
  CHECK_FALSE(t.find_key("z").has_value());

  // held_by: (id position, key position) pairs in (id, key) order.
  CHECK(t.held_by(0) == std::vector<entry>{{0, 0}, {1, 0}});
  CHECK(t.held_by(1) == std::vector<entry>{{0, 0}, {1, 1}});
  CHECK(t.held_by(2) == std::vector<entry>{{1, 0}});
  CHECK(t.held_by(3) == std::vector<entry>{{1, 1}});
  CHECK(t.held_by(4) == std::vector<entry>{{1, 0}});
}

TEST_CASE("storage_tracker: ranks that hold nothing, a one-rank tracker, an empty tracker") {
  const storage_tracker t = std::move(storage_tracker::builder(4).own(1, 9, "k", 0)).build();
  CHECK(t.ranks() == 4);
  check_entry(t, {9, "k", 1, 0, {1}});
  CHECK(t.held_by(0).empty());
  CHECK(t.held_by(2).empty());
  CHECK(t.held_by(3).empty());
  CHECK(t.held_by(1) == std::vector<entry>{{0, 0}});

  const storage_tracker one =
      std::move(storage_tracker::builder(1).own(0, 3, "a", 4).hold(0, 3, "a")).build();
  CHECK(one.ranks() == 1);
  check_entry(one, {3, "a", 0, 4, {0}});

  const storage_tracker empty = storage_tracker::builder(3).build();
  CHECK(empty.ranks() == 3);
  CHECK(empty.ids().empty());
  CHECK(empty.keys().empty());
  CHECK_FALSE(empty.find_id(0).has_value());
  CHECK_FALSE(empty.find_key("x").has_value());
  CHECK(empty.held_by(2).empty());
}

TEST_CASE("storage_tracker: builder errors name the function, the rank, the id and the key") {
  CHECK_THROWS_WITH_AS(storage_tracker::builder(0),
                       "redist::storage_tracker: 0 ranks; there must be at least one", redist::error);
  CHECK_THROWS_WITH_AS(storage_tracker::builder(-2),
                       "redist::storage_tracker: -2 ranks; there must be at least one", redist::error);

  storage_tracker::builder b(4);
  CHECK_THROWS_WITH_AS(b.own(4, 1, "x", 8),
                       "redist::storage_tracker::builder::own: rank 4 is out of range for 4 ranks",
                       redist::error);
  CHECK_THROWS_WITH_AS(b.own(-1, 1, "x", 8),
                       "redist::storage_tracker::builder::own: rank -1 is out of range for 4 ranks",
                       redist::error);
  CHECK_THROWS_WITH_AS(b.hold(7, 1, "x"),
                       "redist::storage_tracker::builder::hold: rank 7 is out of range for 4 ranks",
                       redist::error);
  CHECK_THROWS_WITH_AS(b.hold(-3, 1, "x"),
                       "redist::storage_tracker::builder::hold: rank -3 is out of range for 4 ranks",
                       redist::error);
  CHECK_THROWS_WITH_AS(b.own(0, 1, "", 8), "redist::storage_tracker::builder: empty key name", redist::error);
  CHECK_THROWS_WITH_AS(b.hold(0, 1, ""), "redist::storage_tracker::builder: empty key name", redist::error);
}

TEST_CASE("storage_tracker: a rejected record leaves the builder as it was") {
  // A caller may catch the error and go on building; the rejected calls must leave no trace, not even the
  // name of their key (else a planner would treat key "x" as known, with no owner for any id).
  storage_tracker::builder b(2);
  b.own(0, 1, "y", 8);
  CHECK_THROWS_AS(b.own(2, 1, "x", 8), redist::error);
  CHECK_THROWS_AS(b.hold(-1, 1, "w"), redist::error);
  const storage_tracker t = std::move(b).build();
  CHECK(to_vector(t.ids()) == std::vector<sample_id>{1});
  CHECK(to_vector(t.keys()) == std::vector<std::string>{"y"});
  CHECK_FALSE(t.find_key("x").has_value());
  CHECK_FALSE(t.find_key("w").has_value());
}

TEST_CASE("storage_tracker: one (id, key) owned by two ranks, or recorded with two sizes") {
  // The two owners are named in rank order, whatever order they were recorded in.
  for (bool reversed : {false, true}) {
    CAPTURE(reversed);
    storage_tracker::builder b(4);
    b.own(0, 2, "y", 8);
    if (reversed) {
      b.own(3, 5, "x", 8).own(1, 5, "x", 8);
    } else {
      b.own(1, 5, "x", 8).own(3, 5, "x", 8);
    }
    CHECK_THROWS_WITH_AS(std::move(b).build(),
                         "redist::storage_tracker: id 5, key 'x' is owned by ranks 1 and 3", redist::error);
  }
  // Two owners with two sizes: the owners are the problem.
  CHECK_THROWS_WITH_AS(std::move(storage_tracker::builder(3).own(2, 5, "x", 8).own(0, 5, "x", 9)).build(),
                       "redist::storage_tracker: id 5, key 'x' is owned by ranks 0 and 2", redist::error);
  // One owner, two sizes.
  CHECK_THROWS_WITH_AS(std::move(storage_tracker::builder(3).own(1, 6, "z", 8).own(1, 6, "z", 16)).build(),
                       "redist::storage_tracker: id 6, key 'z' was recorded with 8 and 16 bytes",
                       redist::error);
}

TEST_CASE("storage_tracker: the two-sizes error does not depend on the order of the records") {
  // Every rank builds its tracker from records in its own order; the error must be the same on all of them.
  auto message = [](std::uint64_t first, std::uint64_t second) {
    try {
      std::move(storage_tracker::builder(3).own(1, 6, "z", first).own(1, 6, "z", second)).build();
    } catch (const redist::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message(8, 16) != "no error");
  CHECK(message(8, 16) == message(16, 8));
}

TEST_CASE("storage_tracker: a copy of an (id, key) no rank owns") {
  // The id is unknown.
  CHECK_THROWS_WITH_AS(std::move(storage_tracker::builder(3).own(0, 1, "x", 8).hold(2, 9, "x")).build(),
                       "redist::storage_tracker: rank 2 holds id 9, key 'x', which no rank owns",
                       redist::error);
  // The id is known, the key is known, but not together.
  CHECK_THROWS_WITH_AS(
      std::move(storage_tracker::builder(3).own(0, 1, "x", 8).own(0, 2, "y", 8).hold(1, 1, "y")).build(),
      "redist::storage_tracker: rank 1 holds id 1, key 'y', which no rank owns", redist::error);
  // The key is only ever held.
  CHECK_THROWS_WITH_AS(std::move(storage_tracker::builder(3).own(0, 1, "x", 8).hold(1, 1, "w")).build(),
                       "redist::storage_tracker: rank 1 holds id 1, key 'w', which no rank owns",
                       redist::error);
  // Nothing is owned at all.
  CHECK_THROWS_WITH_AS(std::move(storage_tracker::builder(2).hold(1, 4, "x")).build(),
                       "redist::storage_tracker: rank 1 holds id 4, key 'x', which no rank owns",
                       redist::error);
}

// ---- from_batches ----

// A metadata-only key: no tensor, only the sequence lengths.
field meta_key(std::string name, dtype type, std::vector<std::int64_t> trailing,
               std::vector<std::vector<std::int64_t>> lens) {
  return field{std::move(name), type, std::move(trailing), redist::seqlen_table(lens), std::nullopt};
}

storage_tracker from_batches(const std::vector<batch>& batches) {
  return storage_tracker::from_batches(std::span<const batch>(batches));
}

TEST_CASE("storage_tracker::from_batches: the lowest holding rank owns, bytes are the sample's bytes") {
  // Row bytes: x is i64 (8), y is f32 x [2] (8), h is bf16 x [3, 2] (12).
  std::vector<batch> batches;
  // Rank 0: id 3 (x: 2 tokens, y: 1), id 1 (x: 1+2 tokens, y: none).
  batches.emplace_back(std::vector<sample_id>{3, 1},
                       std::vector<field>{meta_key("x", dtype::i64, {}, {{2}, {1, 2}}),
                                          meta_key("y", dtype::f32, {2}, {{1}, {}})});
  // Rank 1: ids 1 and 7 for x only, and id 7 for h; keys in another order than rank 0's.
  batches.emplace_back(std::vector<sample_id>{1, 7},
                       std::vector<field>{meta_key("h", dtype::bf16, {3, 2}, {{}, {2, 3}}),
                                          meta_key("x", dtype::i64, {}, {{3}, {4}})});
  // Rank 2 holds nothing.
  batches.emplace_back();
  // Rank 3: ids 7 and 3, keys y and x.
  batches.emplace_back(std::vector<sample_id>{7, 3},
                       std::vector<field>{meta_key("y", dtype::f32, {2}, {{3}, {1}}),
                                          meta_key("x", dtype::i64, {}, {{4}, {1, 1}})});
  // Rank 4: id 1 with key h only.
  batches.emplace_back(std::vector<sample_id>{1},
                       std::vector<field>{meta_key("h", dtype::bf16, {3, 2}, {{0, 0}})});

  const storage_tracker t = from_batches(batches);
  CHECK(t.ranks() == 5);
  CHECK(to_vector(t.ids()) == std::vector<sample_id>{1, 3, 7});
  CHECK(to_vector(t.keys()) == std::vector<std::string>{"h", "x", "y"});
  check_entry(t, {1, "h", 1, 0, {1, 4}});   // rank 1 has 1 with h: zero sequences, zero bytes
  check_entry(t, {1, "x", 0, 24, {0, 1}});  // 3 tokens x 8
  check_entry(t, {1, "y", 0, 0, {0}});      // no sequence at all
  check_entry(t, {3, "x", 0, 16, {0, 3}});
  check_entry(t, {3, "y", 0, 8, {0, 3}});
  check_entry(t, {7, "h", 1, 60, {1}});  // 5 tokens x 12
  check_entry(t, {7, "x", 1, 32, {1, 3}});
  check_entry(t, {7, "y", 3, 24, {3}});
  const auto [i3, kh] = at(t, 3, "h");
  CHECK_FALSE(t.has(i3, kh));
  CHECK(t.held_by(2).empty());
  CHECK(t.held_by(4) == std::vector<entry>{{0, 0}});
  CHECK(t.held_by(3) == std::vector<entry>{{1, 1}, {1, 2}, {2, 1}, {2, 2}});
}

TEST_CASE("storage_tracker::from_batches: holders that disagree on a size; no batch at all") {
  std::vector<batch> batches;
  batches.emplace_back(std::vector<sample_id>{1, 2},
                       std::vector<field>{meta_key("x", dtype::i64, {}, {{3}, {1}})});
  batches.emplace_back(std::vector<sample_id>{2}, std::vector<field>{meta_key("x", dtype::i64, {}, {{1}})});
  // Rank 2 has id 1 with 5 tokens where rank 0 has 3.
  batches.emplace_back(std::vector<sample_id>{1},
                       std::vector<field>{meta_key("x", dtype::i64, {}, {{2, 3}})});
  CHECK_THROWS_WITH_AS(
      from_batches(batches),
      "redist::storage_tracker::from_batches: ranks 0 and 2 disagree on the size of id 1, key 'x' "
      "(24 and 40 bytes)",
      redist::error);
  // Same tokens, other dtype: the bytes differ too.
  batches[2] = batch(std::vector<sample_id>{1}, std::vector<field>{meta_key("x", dtype::i32, {}, {{3}})});
  CHECK_THROWS_WITH_AS(
      from_batches(batches),
      "redist::storage_tracker::from_batches: ranks 0 and 2 disagree on the size of id 1, key 'x' "
      "(24 and 12 bytes)",
      redist::error);
  // Same bytes from another shape: agreed.
  batches[2] = batch(std::vector<sample_id>{1}, std::vector<field>{meta_key("x", dtype::i32, {2}, {{1, 2}})});
  const storage_tracker t = from_batches(batches);
  check_entry(t, {1, "x", 0, 24, {0, 2}});
  check_entry(t, {2, "x", 0, 8, {0, 1}});

  CHECK_THROWS_WITH_AS(from_batches({}), "redist::storage_tracker: 0 ranks; there must be at least one",
                       redist::error);
}

// ---- order independence ----

struct record {
  bool owns;
  int rank;
  sample_id id;
  std::string key;
  std::uint64_t bytes;
};

// What a tracker built from `records` must say, computed without it.
struct model_entry {
  int owner = -1;
  std::uint64_t bytes = 0;
  std::set<int> holders;
};
using model = std::map<std::pair<sample_id, std::string>, model_entry>;

void check_against(const storage_tracker& t, int ranks, const model& m) {
  std::set<sample_id> ids;
  std::set<std::string> keys;
  for (const auto& [ik, e] : m) {
    ids.insert(ik.first);
    keys.insert(ik.second);
  }
  REQUIRE(t.ranks() == ranks);
  REQUIRE(to_vector(t.ids()) == std::vector<sample_id>(ids.begin(), ids.end()));
  REQUIRE(to_vector(t.keys()) == std::vector<std::string>(keys.begin(), keys.end()));
  std::vector<std::vector<entry>> held(static_cast<std::size_t>(ranks));
  std::size_t i = 0;
  for (sample_id id : ids) {
    std::size_t k = 0;
    for (const auto& key : keys) {
      CHECK(t.find_id(id) == std::optional<std::size_t>(i));
      CHECK(t.find_key(key) == std::optional<std::size_t>(k));
      const auto it = m.find({id, key});
      if (it == m.end()) {
        CHECK_FALSE(t.has(i, k));
        CHECK(t.owner(i, k) == -1);
        CHECK(t.holders(i, k).empty());
      } else {
        CHECK(t.has(i, k));
        CHECK(t.owner(i, k) == it->second.owner);
        CHECK(t.bytes(i, k) == it->second.bytes);
        CHECK(to_vector(t.holders(i, k)) ==
              std::vector<int>(it->second.holders.begin(), it->second.holders.end()));
        for (int r : it->second.holders) held[static_cast<std::size_t>(r)].emplace_back(i, k);
      }
      for (int r = 0; r < ranks; ++r)
        CHECK(t.holds(r, i, k) == (it != m.end() && it->second.holders.count(r) > 0));
      ++k;
    }
    ++i;
  }
  for (int r = 0; r < ranks; ++r) CHECK(t.held_by(r) == held[static_cast<std::size_t>(r)]);
}

TEST_CASE("storage_tracker: every query is the same whatever order the records come in") {
  for (std::uint32_t seed : {11u, 12u, 13u, 14u, 15u}) {
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const int ranks = 1 + static_cast<int>(rng() % 9);
    const std::vector<std::string> names = {"values", "input_ids", "a", "logprobs"};
    std::vector<record> records;
    model m;
    for (sample_id n = 0; n < 30; ++n) {
      const sample_id id = (n * 7919) % 101 + (n % 3 == 0 ? 1000000000000ull : 0);
      for (const auto& key : names) {
        if (rng() % 4 == 0) continue;  // this id lacks this key
        const int owner = static_cast<int>(rng() % static_cast<std::uint32_t>(ranks));
        const std::uint64_t bytes = rng() % 3 == 0 ? 0 : rng() % 5000;
        auto& e = m[{id, key}];
        e.owner = owner;
        e.bytes = bytes;
        e.holders.insert(owner);
        records.push_back({true, owner, id, key, bytes});
        if (rng() % 3 == 0) records.push_back({true, owner, id, key, bytes});  // owned twice, same size
        for (int r = 0; r < ranks; ++r) {
          const auto roll = rng() % 6;
          if (roll == 0) {
            records.push_back({false, r, id, key, 0});
            e.holders.insert(r);
          } else if (roll == 1) {  // a copy recorded twice (or by the owner itself)
            records.push_back({false, r, id, key, 0});
            records.push_back({false, r, id, key, 0});
            e.holders.insert(r);
          }
        }
      }
    }
    auto build = [&](const std::vector<record>& recs) {
      storage_tracker::builder b(ranks);
      for (const auto& r : recs) r.owns ? b.own(r.rank, r.id, r.key, r.bytes) : b.hold(r.rank, r.id, r.key);
      return std::move(b).build();
    };
    {
      INFO("records in generation order");
      check_against(build(records), ranks, m);
    }
    auto reversed = records;
    std::reverse(reversed.begin(), reversed.end());
    {
      INFO("records reversed");
      check_against(build(reversed), ranks, m);
    }
    for (int round = 0; round < 3; ++round) {
      INFO("shuffle round " << round);
      auto shuffled = records;
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      check_against(build(shuffled), ranks, m);
    }
  }
}

}  // namespace
