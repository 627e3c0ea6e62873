// Unit tests of redist::plan_all_to_all: one hand-worked plan per rule (data already there, same node, fewest
// bytes, lowest rank, replicas sharing a payload, payload order, key groups), the request errors with their
// messages, and plans that neither depend on record order nor fail check_plan.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <ostream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/check.hpp"
#include "redist/plan/request.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

#include "plan_printer.hpp"

namespace {

using redist::all_to_all_step;
using redist::id_list;
using redist::plan;
using redist::plan_options;
using redist::sample_id;
using keys_t = std::vector<std::string>;
using wants_t = std::vector<id_list>;
using payload = all_to_all_step::payload;
using route = all_to_all_step::route;

// `rank` owns (or holds a copy of) every (id, key) of ids x keys, each `bytes` long.
struct holding {
  int rank;
  id_list ids;
  keys_t keys;
  std::uint64_t bytes = 8;
};

redist::storage_tracker make_tracker(int ranks, const std::vector<holding>& owned,
                                     const std::vector<holding>& copies = {}) {
  redist::storage_tracker::builder b(ranks);
  for (const auto& h : owned)
    for (auto id : h.ids)
      for (const auto& k : h.keys) b.own(h.rank, id, k, h.bytes);
  for (const auto& h : copies)
    for (auto id : h.ids)
      for (const auto& k : h.keys) b.hold(h.rank, id, k);
  return std::move(b).build();
}

plan a2a(const redist::storage_tracker& t, const wants_t& wants, const keys_t& keys,
         const plan_options& options = {}) {
  return redist::plan_all_to_all(t, wants, keys, options);
}
plan_options per_node(int ranks_per_node) { return {.ranks_per_node = ranks_per_node, .key_groups = {}}; }

// A plan of one all-to-all step.
plan one_step(int ranks, all_to_all_step step) { return plan{.ranks = ranks, .stages = {{std::move(step)}}}; }
plan nothing(int ranks) { return plan{.ranks = ranks, .stages = {}}; }

TEST_CASE("all_to_all: what a consumer already holds is not sent") {
  const auto t = make_tracker(3, {{0, {1, 2, 3}, {"x"}}}, {{2, {2}, {"x"}}});
  // Rank 2 lacks 3 and 1, both only on rank 0.
  CHECK(a2a(t, {{}, {}, {3, 2, 1}}, {"x"}) ==
        one_step(3, {.keys = {"x"}, .payloads = {{0, 0, {3, 1}}}, .routes = {{0, 2, 0}}}));
  // Rank 2 wants only what it holds; rank 0 wants what it owns.
  CHECK(a2a(t, {{}, {}, {2}}, {"x"}) == nothing(3));
  CHECK(a2a(t, {{3, 1, 2}, {}, {2}}, {"x"}) == nothing(3));
  CHECK(a2a(t, {}, {"x"}) == nothing(3));
}

TEST_CASE("all_to_all: a holder on the consumer's node beats a lower or less loaded rank elsewhere") {
  // Id 7 is on ranks 0 and 3; rank 2 wants it.
  const auto t = make_tracker(4, {{0, {7}, {"x"}}}, {{3, {7}, {"x"}}});
  const wants_t wants = {{}, {}, {7}};
  auto from = [](int src) {
    return one_step(4, {.keys = {"x"}, .payloads = {{src, 0, {7}}}, .routes = {{src, 2, 0}}});
  };
  // Nodes {0,1} {2,3}: rank 3 shares rank 2's node.
  CHECK(a2a(t, wants, {"x"}, per_node(2)) == from(3));
  // One rank per node, or one node for all: equally local, the lower rank.
  CHECK(a2a(t, wants, {"x"}, per_node(1)) == from(0));
  CHECK(a2a(t, wants, {"x"}, per_node(4)) == from(0));

  // Rank 3 also holds id 8 (100 bytes), which only it has; rank 2 wants 8 first, then 7.
  const auto t2 = make_tracker(4, {{0, {7}, {"x"}}, {3, {8}, {"x"}, 100}}, {{3, {7}, {"x"}}});
  const wants_t wants2 = {{}, {}, {8, 7}};
  // Nodes {0,1} {2,3}: 7 still comes from rank 3, though 100 bytes are assigned to it and none to rank 0.
  CHECK(a2a(t2, wants2, {"x"}, per_node(2)) ==
        one_step(4, {.keys = {"x"}, .payloads = {{3, 0, {8, 7}}}, .routes = {{3, 2, 0}}}));
  // Without a local holder (or with all local) rank 0 has fewer bytes: 7 from 0, 8 from 3. Payloads in
  // source order, as rank 2's routes are.
  const plan split =
      one_step(4, {.keys = {"x"}, .payloads = {{0, 0, {7}}, {3, 0, {8}}}, .routes = {{0, 2, 0}, {3, 2, 1}}});
  CHECK(a2a(t2, wants2, {"x"}, per_node(1)) == split);
  CHECK(a2a(t2, wants2, {"x"}, per_node(4)) == split);
}

TEST_CASE("all_to_all: among equally local holders, the one with the fewest bytes assigned so far") {
  // Ids 1 (100 bytes), 2 (10), 3 (50) on ranks 0 and 1; rank 3 wants 1, 2, 3.
  const auto t = make_tracker(4, {{0, {1}, {"x"}, 100}, {0, {2}, {"x"}, 10}, {0, {3}, {"x"}, 50}},
                              {{1, {1, 2, 3}, {"x"}}});
  // 1: 0 vs 0 bytes, rank 0 (100). 2: 100 vs 0, rank 1 (10). 3: 100 vs 10, rank 1 (60). Counting transfers
  // instead of bytes would send 3 from rank 0 (one transfer each).
  const plan expected = one_step(
      4, {.keys = {"x"}, .payloads = {{0, 0, {1}}, {1, 0, {2, 3}}}, .routes = {{0, 3, 0}, {1, 3, 1}}});
  CHECK(a2a(t, {{}, {}, {}, {1, 2, 3}}, {"x"}, per_node(1)) == expected);  // both remote
  CHECK(a2a(t, {{}, {}, {}, {1, 2, 3}}, {"x"}, per_node(4)) == expected);  // both local
}

TEST_CASE("all_to_all: a sender's load counts its bytes once per replica that receives them") {
  // Ids 1 (10 bytes), 2 (15), 3 (8) on ranks 0 and 1 (node 0 of {0,1} {2,3} {4,5}). Ranks 2 and 3 want 1,
  // rank 4 wants 2, rank 5 wants 3.
  const auto t = make_tracker(6, {{0, {1}, {"x"}, 10}, {0, {2}, {"x"}, 15}, {0, {3}, {"x"}, 8}},
                              {{1, {1, 2, 3}, {"x"}}});
  // 1 -> {2,3}: rank 0, 2 x 10 = 20 bytes. 2 -> {4}: 20 vs 0, rank 1 (15). 3 -> {5}: 20 vs 15, rank 1. With
  // the bytes counted once, rank 0 would have 10 < 15 and send 3.
  const plan expected = one_step(6, {.keys = {"x"},
                                     .payloads = {{0, 0, {1}}, {1, 0, {2}}, {1, 0, {3}}},
                                     .routes = {{0, 2, 0}, {0, 3, 0}, {1, 4, 1}, {1, 5, 2}}});
  CHECK(a2a(t, {{}, {}, {1}, {1}, {2}, {3}}, {"x"}, per_node(2)) == expected);
}

TEST_CASE("all_to_all: equally local and loaded holders: the lowest rank sends, owner or not") {
  const auto t = make_tracker(4, {{3, {5}, {"x"}}}, {{2, {5}, {"x"}}, {1, {5}, {"x"}}});
  const plan expected = one_step(4, {.keys = {"x"}, .payloads = {{1, 0, {5}}}, .routes = {{1, 0, 0}}});
  CHECK(a2a(t, {{5}}, {"x"}, per_node(1)) == expected);
  CHECK(a2a(t, {{5}}, {"x"}, per_node(4)) == expected);
}

TEST_CASE("all_to_all: replicas on one node share one payload per key, one route each") {
  // Nodes {0..3} {4..7}; ranks 4..7 (tensor replicas) all want 12, 10; everything on rank 0.
  const auto t = make_tracker(8, {{0, {10, 11, 12}, {"x", "y"}}});
  const id_list w = {12, 10};
  const plan expected = one_step(
      8,
      {.keys = {"x", "y"},
       .payloads = {{0, 0, {12, 10}}, {0, 1, {12, 10}}},
       .routes = {{0, 4, 0}, {0, 4, 1}, {0, 5, 0}, {0, 5, 1}, {0, 6, 0}, {0, 6, 1}, {0, 7, 0}, {0, 7, 1}}});
  CHECK(a2a(t, {{}, {}, {}, {}, w, w, w, w}, {"x", "y"}, per_node(4)) == expected);
}

TEST_CASE("all_to_all: replicas without a local holder share the remote sender's payload across nodes") {
  // Nodes {0,1} {2,3} {4,5}: ranks 0..3 want 6, 5, which only rank 4 has.
  const auto t = make_tracker(6, {{4, {5, 6}, {"x"}}});
  const id_list w = {6, 5};
  const plan expected = one_step(
      6,
      {.keys = {"x"}, .payloads = {{4, 0, {6, 5}}}, .routes = {{4, 0, 0}, {4, 1, 0}, {4, 2, 0}, {4, 3, 0}}});
  CHECK(a2a(t, {w, w, w, w}, {"x"}, per_node(2)) == expected);
}

TEST_CASE("all_to_all: replicas on different nodes each get a local sender when one exists") {
  // Nodes {0,1} {2,3} {4,5} {6,7}. Ids 1, 2 on ranks 0, 3 and 5; ranks 1, 2, 4 and 6 want 2, 1.
  const auto t = make_tracker(8, {{0, {1, 2}, {"x"}}}, {{3, {1, 2}, {"x"}}, {5, {1, 2}, {"x"}}});
  const id_list w = {2, 1};
  // Rank 1 from rank 0, rank 2 from rank 3, rank 4 from rank 5: 16 bytes each. Rank 6 has no local holder:
  // 2 from rank 0 (16 16 16, lowest), then 1 from rank 3 (24 16 16, fewest, lowest).
  const plan expected =
      one_step(8, {.keys = {"x"},
                   .payloads = {{0, 0, {2, 1}}, {3, 0, {2, 1}}, {5, 0, {2, 1}}, {0, 0, {2}}, {3, 0, {1}}},
                   .routes = {{0, 1, 0}, {0, 6, 3}, {3, 2, 1}, {3, 6, 4}, {5, 4, 2}}});
  CHECK(a2a(t, {{}, w, w, {}, w, {}, w}, {"x"}, per_node(2)) == expected);
}

TEST_CASE("all_to_all: a replica holding part of the data gets its own payload, the others still share") {
  // One node {0..3}; ids 20, 21, 22 on rank 0, and rank 3 holds a copy of 21. Ranks 1, 2, 3 want 21, 20, 22.
  const auto t = make_tracker(4, {{0, {20, 21, 22}, {"x"}}}, {{3, {21}, {"x"}}});
  const id_list w = {21, 20, 22};
  // 21 for ranks 1 and 2: holders 0 and 3 equally local and loaded, rank 0 (16 bytes). 20 and 22 for all
  // three from rank 0. Ranks 1 and 2 share the payload of all three ids, rank 3 gets 20, 22 only.
  CHECK(a2a(t, {{}, w, w, w}, {"x"}, per_node(4)) ==
        one_step(4, {.keys = {"x"},
                     .payloads = {{0, 0, {21, 20, 22}}, {0, 0, {20, 22}}},
                     .routes = {{0, 1, 0}, {0, 2, 0}, {0, 3, 1}}}));

  // Wanted as 20, 21, 22: 20 first, from rank 0 to three ranks (24 bytes); then 21 for ranks 1 and 2: rank 0
  // has 24, rank 3 none, so rank 3 sends it. Every rank shares the payload 20, 22; 1 and 2 share rank 3's.
  const id_list w2 = {20, 21, 22};
  CHECK(a2a(t, {{}, w2, w2, w2}, {"x"}, per_node(4)) ==
        one_step(4, {.keys = {"x"},
                     .payloads = {{0, 0, {20, 22}}, {3, 0, {21}}},
                     .routes = {{0, 1, 0}, {0, 2, 0}, {0, 3, 0}, {3, 1, 1}, {3, 2, 1}}}));
}

TEST_CASE("all_to_all: payload ids keep the order the consumer asked for") {
  // 30, 10 on rank 0; 20, 40 on rank 1. Rank 2 wants 40, 30, 20, 10.
  const auto t = make_tracker(3, {{0, {10, 30}, {"x"}}, {1, {20, 40}, {"x"}}});
  CHECK(a2a(t, {{}, {}, {40, 30, 20, 10}}, {"x"}) ==
        one_step(3, {.keys = {"x"},
                     .payloads = {{0, 0, {30, 10}}, {1, 0, {40, 20}}},
                     .routes = {{0, 2, 0}, {1, 2, 1}}}));
  CHECK(a2a(t, {{}, {}, {10, 40, 30, 20}}, {"x"}) ==
        one_step(3, {.keys = {"x"},
                     .payloads = {{0, 0, {10, 30}}, {1, 0, {40, 20}}},
                     .routes = {{0, 2, 0}, {1, 2, 1}}}));
}

TEST_CASE("all_to_all: one step per key group, in group order; groups with nothing to move are dropped") {
  // Keys a, b, c, d of ids 1, 2 on rank 0; rank 1 already holds d. Requested c, a, b, d.
  const auto t = make_tracker(2, {{0, {1, 2}, {"a", "b", "c", "d"}}}, {{1, {1, 2}, {"d"}}});
  const wants_t wants = {{}, {2, 1}};
  const keys_t keys = {"c", "a", "b", "d"};
  // No groups: one step, keys in requested order (d too, though none of it moves).
  CHECK(a2a(t, wants, keys) == one_step(2, {.keys = {"c", "a", "b", "d"},
                                            .payloads = {{0, 0, {2, 1}}, {0, 1, {2, 1}}, {0, 2, {2, 1}}},
                                            .routes = {{0, 1, 0}, {0, 1, 1}, {0, 1, 2}}}));
  // Groups {c} {} {b, a} {d}: the empty group and the group of d move nothing and make no step.
  const plan_options options{.ranks_per_node = 1, .key_groups = {{"c"}, {}, {"b", "a"}, {"d"}}};
  const plan expected{
      .ranks = 2,
      .stages = {{all_to_all_step{.keys = {"c"}, .payloads = {{0, 0, {2, 1}}}, .routes = {{0, 1, 0}}}},
                 {all_to_all_step{.keys = {"b", "a"},
                                  .payloads = {{0, 0, {2, 1}}, {0, 1, {2, 1}}},
                                  .routes = {{0, 1, 0}, {0, 1, 1}}}}}};
  CHECK(a2a(t, wants, keys, options) == expected);
}

TEST_CASE("all_to_all: payloads in the order first needed, routes ascending by (source, destination, key)") {
  // Key y is requested first. Rank 3 wants from ranks 1 and 0; rank 2 from rank 1; rank 0 from rank 1.
  const auto t = make_tracker(4, {{0, {1}, {"x", "y"}}, {1, {2, 3}, {"x", "y"}}});
  const plan expected = one_step(
      4,
      {.keys = {"y", "x"},
       .payloads = {{1, 0, {2}}, {1, 1, {2}}, {0, 0, {1}}, {1, 0, {3}}, {0, 1, {1}}, {1, 1, {3}}},
       .routes = {{0, 3, 2}, {0, 3, 4}, {1, 0, 0}, {1, 0, 1}, {1, 2, 0}, {1, 2, 1}, {1, 3, 3}, {1, 3, 5}}});
  // Lists in rank order: [2] (ranks 0 and 2), then [1, 3] (rank 3). Per list, key y then x; per rank, sources
  // ascending: payloads (1,y,[2]) (1,x,[2]) (0,y,[1]) (1,y,[3]) (0,x,[1]) (1,x,[3]).
  CHECK(a2a(t, {{2}, {}, {2}, {1, 3}}, {"y", "x"}) == expected);
}

TEST_CASE("all_to_all: ranks that want nothing or hold nothing take no part") {
  // Rank 2 holds id 2 nobody wants; ranks 3 and 4 hold and want nothing.
  const auto t = make_tracker(5, {{0, {1}, {"x"}}, {2, {2}, {"x"}}});
  const plan expected = one_step(5, {.keys = {"x"}, .payloads = {{0, 0, {1}}}, .routes = {{0, 1, 0}}});
  CHECK(a2a(t, {{}, {1}}, {"x"}) == expected);
  CHECK(a2a(t, {{}, {1}, {}, {}, {}}, {"x"}) == expected);
  CHECK(a2a(t, {}, {"x"}) == nothing(5));
  CHECK(a2a(t, {{}, {1}}, {}) == nothing(5));  // no key requested: nothing moves
}

TEST_CASE("all_to_all: request errors name the planner, the rank, the id and the key") {
  // x: ids 1 and 2; y: id 1 only.
  const auto t = make_tracker(3, {{0, {1}, {"x", "y"}}, {0, {2}, {"x"}}});
  const keys_t xy = {"x", "y"};
  const wants_t good = {{}, {1}};
  REQUIRE(a2a(t, good, xy).step_count() == 1);
  CHECK_THROWS_WITH_AS(a2a(t, good, {"x", "nope"}),
                       "redist::plan_all_to_all: unknown key 'nope': no rank holds it", redist::error);
  CHECK_THROWS_WITH_AS(a2a(t, good, {"x", "y", "x"}), "redist::plan_all_to_all: key 'x' requested twice",
                       redist::error);
  CHECK_THROWS_WITH_AS(a2a(t, {{}, {1, 99}}, xy),
                       "redist::plan_all_to_all: rank 1 wants id 99, which no rank holds", redist::error);
  CHECK_THROWS_WITH_AS(a2a(t, {{}, {}, {1, 2}}, xy),
                       "redist::plan_all_to_all: rank 2 wants id 2, key 'y', which no rank holds",
                       redist::error);
  CHECK(a2a(t, {{}, {}, {1, 2}}, {"x"}).step_count() == 1);  // x alone is fine
  CHECK_THROWS_WITH_AS(a2a(t, {{}, {1}, {}, {1}}, xy),
                       "redist::plan_all_to_all: wants names 4 ranks but the tracker has 3", redist::error);
  CHECK_THROWS_WITH_AS(a2a(t, {{}, {}, {1, 2, 1}}, {"x"}), "redist::plan_all_to_all: rank 2 wants id 1 twice",
                       redist::error);
  CHECK_THROWS_WITH_AS(a2a(t, good, xy, per_node(0)),
                       "redist::plan_all_to_all: ranks_per_node is 0, must be at least 1", redist::error);
  CHECK_THROWS_WITH_AS(a2a(t, good, xy, per_node(-2)),
                       "redist::plan_all_to_all: ranks_per_node is -2, must be at least 1", redist::error);

  auto grouped = [&](std::vector<keys_t> groups) {
    return a2a(t, good, xy, {.ranks_per_node = 1, .key_groups = std::move(groups)});
  };
  CHECK(grouped({{"y"}, {"x"}}).step_count() == 2);
  CHECK_THROWS_WITH_AS(grouped({{"x"}, {"y", "z"}}),
                       "redist::plan_all_to_all: key group names 'z', which is not requested", redist::error);
  CHECK_THROWS_WITH_AS(grouped({{"x", "y"}, {"y"}}), "redist::plan_all_to_all: key 'y' is in two key groups",
                       redist::error);
  CHECK_THROWS_WITH_AS(grouped({{"x", "x", "y"}}), "redist::plan_all_to_all: key 'x' is in two key groups",
                       redist::error);
  CHECK_THROWS_WITH_AS(grouped({{"y"}}), "redist::plan_all_to_all: key 'x' is in no key group",
                       redist::error);
  CHECK_THROWS_WITH_AS(grouped({{}}), "redist::plan_all_to_all: key 'x' is in no key group", redist::error);
}

// ---- random plans: determinism, and every plan correct and minimal ----

struct record {
  bool owns;
  int rank;
  sample_id id;
  std::string key;
  std::uint64_t bytes;
};

TEST_CASE("all_to_all: plans do not depend on record order, and deliver exactly what is missing") {
  for (std::uint32_t seed : {101u, 102u, 103u, 104u, 105u, 106u}) {
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const int ranks = 2 + static_cast<int>(rng() % 15);
    const int rpn = 1 + static_cast<int>(rng() % 4);
    const keys_t key_names = {"k0", "k1", "k2"};
    std::vector<record> records;
    std::vector<sample_id> ids;
    // held[(rank, id, key)]: what the tracker will say, for counting deliveries independently.
    std::set<std::tuple<int, sample_id, std::string>> held;
    for (sample_id n = 0; n < 30; ++n) {
      const sample_id id = 500 + 13 * n;
      ids.push_back(id);
      for (const auto& key : key_names) {
        const int owner = static_cast<int>(rng() % static_cast<std::uint32_t>(ranks));
        records.push_back({true, owner, id, key, 1 + rng() % 1000});
        held.insert({owner, id, key});
        for (int r = 0; r < ranks; ++r)
          if (r != owner && rng() % 4 == 0) {
            records.push_back({false, r, id, key, 0});
            held.insert({r, id, key});
          }
      }
    }
    // Distinct wants, then some ranks copy another's list (replicas), some want nothing.
    wants_t wants(static_cast<std::size_t>(ranks));
    for (std::size_t r = 0; r < wants.size(); ++r) {
      const auto roll = rng() % 4;
      if (roll == 0) continue;
      if (roll == 1 && r > 0) {
        wants[r] = wants[r - 1];
        continue;
      }
      for (auto id : ids)
        if (rng() % 3 == 0) wants[r].push_back(id);
      std::shuffle(wants[r].begin(), wants[r].end(), rng);
    }
    const keys_t keys = {"k1", "k2", "k0"};
    const plan_options options{.ranks_per_node = rpn, .key_groups = {{"k1", "k0"}, {"k2"}}};

    auto build = [&](const std::vector<record>& recs) {
      redist::storage_tracker::builder b(ranks);
      for (const auto& r : recs) r.owns ? b.own(r.rank, r.id, r.key, r.bytes) : b.hold(r.rank, r.id, r.key);
      return std::move(b).build();
    };
    const auto tracker = build(records);
    const plan expected = a2a(tracker, wants, keys, options);
    CHECK(expected.ranks == ranks);
    for (int round = 0; round < 3; ++round) {
      INFO("shuffle round " << round);
      auto shuffled = records;
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      CHECK(a2a(build(shuffled), wants, keys, options) == expected);
    }
    auto keys_reversed = records;  // k2 is seen first, then k1, then k0
    std::stable_sort(keys_reversed.begin(), keys_reversed.end(),
                     [](const record& a, const record& b) { return a.key > b.key; });
    CHECK(a2a(build(keys_reversed), wants, keys, options) == expected);

    // Every wanted (rank, id, key) not held arrives exactly once, nothing else moves.
    std::size_t missing = 0;
    for (int r = 0; r < ranks; ++r)
      for (auto id : wants[static_cast<std::size_t>(r)])
        for (const auto& key : keys) missing += held.count({r, id, key}) ? 0 : 1;
    const auto check = redist::check_plan(expected, tracker, wants, keys);
    CHECK(check.ok());
    CHECK(check.deliveries == missing);
    CHECK(check.redundant == 0);
    CHECK(check.unwanted == 0);
    CHECK(check.missing == 0);

    // The structure the executor relies on: one stage per non-empty group, one step per stage; routes
    // strictly ascending by (src, dst, key); each payload's source is its routes' source and each payload is
    // used.
    CHECK(expected.stages.size() <= 2);
    for (const auto& stage : expected.stages) {
      REQUIRE(stage.size() == 1);
      REQUIRE(std::holds_alternative<all_to_all_step>(stage[0]));
      const auto& s = std::get<all_to_all_step>(stage[0]);
      CHECK(!s.routes.empty());
      std::vector<bool> used(s.payloads.size(), false);
      for (std::size_t i = 0; i < s.routes.size(); ++i) {
        const auto& rt = s.routes[i];
        REQUIRE(rt.payload < s.payloads.size());
        used[rt.payload] = true;
        CHECK(s.payloads[rt.payload].src == rt.src);
        CHECK(rt.src != rt.dst);
        if (i > 0) {
          const auto& pr = s.routes[i - 1];
          CHECK(std::tuple(pr.src, pr.dst, s.payloads[pr.payload].key) <
                std::tuple(rt.src, rt.dst, s.payloads[rt.payload].key));
        }
      }
      CHECK(std::all_of(used.begin(), used.end(), [](bool u) { return u; }));
      // Payloads are distinct: the same (source, key, ids) is staged once.
      std::set<std::tuple<int, std::uint32_t, id_list>> distinct;
      for (const auto& p : s.payloads) distinct.insert({p.src, p.key, p.ids});
      CHECK(distinct.size() == s.payloads.size());
    }
  }
}

}  // namespace
