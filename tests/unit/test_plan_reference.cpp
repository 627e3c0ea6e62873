// Unit tests of the reference planners, plan_gather_scatter and plan_broadcast: one hand-worked plan per rule
// (roots, pruning, merging, key groups, source choice, stages), determinism under record order, request
// errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/request.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

#include "plan_printer.hpp"

namespace {

using redist::broadcast_step;
using redist::gather_step;
using redist::id_list;
using redist::plan;
using redist::plan_options;
using redist::scatter_step;
using keys_t = std::vector<std::string>;
using wants_t = std::vector<id_list>;

// `rank` owns (or holds a copy of) every (id, key) of ids x keys.
struct holding {
  int rank;
  id_list ids;
  keys_t keys;
};

redist::storage_tracker make_tracker(int ranks, const std::vector<holding>& owned,
                                     const std::vector<holding>& copies = {}) {
  redist::storage_tracker::builder b(ranks);
  for (const auto& h : owned)
    for (auto id : h.ids)
      for (const auto& k : h.keys) b.own(h.rank, id, k, 8);
  for (const auto& h : copies)
    for (auto id : h.ids)
      for (const auto& k : h.keys) b.hold(h.rank, id, k);
  return std::move(b).build();
}

plan gather_scatter(const redist::storage_tracker& t, const wants_t& wants, const keys_t& keys,
                    const plan_options& options = {}) {
  return redist::plan_gather_scatter(t, wants, keys, options);
}
plan broadcast(const redist::storage_tracker& t, const wants_t& wants, const keys_t& keys,
               const plan_options& options = {}) {
  return redist::plan_broadcast(t, wants, keys, options);
}

// ---- gather-scatter ----

TEST_CASE(
    "gather_scatter: root is the lowest owner; gathers hold each owner's ids, scatters each consumer's") {
  // x: 10,12 on rank 2, 11 on rank 1, 13 on rank 3, 14 (wanted by nobody) on rank 0. y: everything on rank 3.
  const auto t = make_tracker(4, {{2, {10, 12}, {"x"}},
                                  {1, {11}, {"x"}},
                                  {3, {13}, {"x"}},
                                  {0, {14}, {"x"}},
                                  {3, {10, 11, 12, 13, 14}, {"y"}}});
  const wants_t wants = {{13, 10}, {}, {11}, {12, 10}};
  // x: owners {1, 2, 3}, root 1 lacks 10, 12, 13. y: one owner, who is the root and holds everything, so no
  // gather. Requested order y, x: scatters in that order, after every gather.
  const plan expected{
      .ranks = 4,
      .stages = {
          {gather_step{.root = 1, .srcs = {1, 2, 3}, .ids = {{11}, {10, 12}, {13}}, .keys = {"x"}}},
          {scatter_step{.root = 3, .dsts = {0, 2, 3}, .ids = {{10, 13}, {11}, {10, 12}}, .keys = {"y"}}},
          {scatter_step{.root = 1, .dsts = {0, 2, 3}, .ids = {{10, 13}, {11}, {10, 12}}, .keys = {"x"}}}}};
  CHECK(gather_scatter(t, wants, {"y", "x"}) == expected);
}

TEST_CASE("gather_scatter: no gather when the root already holds every wanted id") {
  const wants_t wants = {{}, {}, {2, 1}};
  const scatter_step scatter{.root = 0, .dsts = {2}, .ids = {{1, 2}}, .keys = {"x"}};
  // Rank 0 owns 1 and holds a copy of 2 (owned by rank 1): nothing to gather.
  const auto with_copy = make_tracker(3, {{0, {1}, {"x"}}, {1, {2}, {"x"}}}, {{0, {2}, {"x"}}});
  CHECK(gather_scatter(with_copy, wants, {"x"}) == plan{.ranks = 3, .stages = {{scatter}}});
  // Without the copy the root must gather 2 from rank 1.
  const auto without = make_tracker(3, {{0, {1}, {"x"}}, {1, {2}, {"x"}}});
  const gather_step gather{.root = 0, .srcs = {0, 1}, .ids = {{1}, {2}}, .keys = {"x"}};
  CHECK(gather_scatter(without, wants, {"x"}) == plan{.ranks = 3, .stages = {{gather}, {scatter}}});
}

TEST_CASE("gather_scatter: no scatter and no gather for a key every destination already holds") {
  // Rank 2 holds copies of 1 and 2 for x but only of 1 for y; rank 0 owns 1.
  const auto t =
      make_tracker(3, {{0, {1}, {"x", "y"}}, {1, {2}, {"x", "y"}}}, {{2, {1, 2}, {"x"}}, {2, {1}, {"y"}}});
  const wants_t wants = {{1}, {}, {1, 2}};
  const plan expected{
      .ranks = 3,
      .stages = {{gather_step{.root = 0, .srcs = {0, 1}, .ids = {{1}, {2}}, .keys = {"y"}}},
                 {scatter_step{.root = 0, .dsts = {0, 2}, .ids = {{1}, {1, 2}}, .keys = {"y"}}}}};
  CHECK(gather_scatter(t, wants, {"x", "y"}) == expected);
}

// a and b: 1 on rank 0, 2 and 3 on rank 1. c: 1 and 2 on rank 0, 3 on rank 1. Same root (0) for every key.
redist::storage_tracker three_keys() {
  return make_tracker(4,
                      {{0, {1}, {"a", "b", "c"}}, {1, {2, 3}, {"a", "b"}}, {0, {2}, {"c"}}, {1, {3}, {"c"}}});
}

TEST_CASE("gather_scatter: identical steps of different keys merge; steps whose ids differ do not") {
  const wants_t wants = {{}, {}, {3, 1}, {2}};
  // c's gather differs from a's and b's in its ids; every scatter is the same.
  const plan expected{
      .ranks = 4,
      .stages = {{gather_step{.root = 0, .srcs = {0, 1}, .ids = {{1, 2}, {3}}, .keys = {"c"}}},
                 {gather_step{.root = 0, .srcs = {0, 1}, .ids = {{1}, {2, 3}}, .keys = {"a", "b"}}},
                 {scatter_step{.root = 0, .dsts = {2, 3}, .ids = {{1, 3}, {2}}, .keys = {"c", "a", "b"}}}}};
  CHECK(gather_scatter(three_keys(), wants, {"c", "a", "b"}) == expected);
}

TEST_CASE("gather_scatter: key groups keep their keys apart; merged keys keep the requested order") {
  const wants_t wants = {{}, {}, {3, 1}, {2}};
  const plan_options options{.ranks_per_node = 1, .key_groups = {{"b", "c"}, {"a"}}};
  const gather_step gather_ab{.root = 0, .srcs = {0, 1}, .ids = {{1}, {2, 3}}, .keys = {}};
  gather_step gather_a = gather_ab, gather_b = gather_ab;
  gather_a.keys = {"a"};
  gather_b.keys = {"b"};
  const plan expected{
      .ranks = 4,
      .stages = {{gather_step{.root = 0, .srcs = {0, 1}, .ids = {{1, 2}, {3}}, .keys = {"c"}}},
                 {gather_a},
                 {gather_b},
                 {scatter_step{.root = 0, .dsts = {2, 3}, .ids = {{1, 3}, {2}}, .keys = {"c", "b"}}},
                 {scatter_step{.root = 0, .dsts = {2, 3}, .ids = {{1, 3}, {2}}, .keys = {"a"}}}}};
  CHECK(gather_scatter(three_keys(), wants, {"c", "a", "b"}, options) == expected);
}

// ---- broadcast ----

TEST_CASE("broadcast: a source on the targets' node beats a lower rank elsewhere") {
  // Id 7 is on ranks 0 and 3; ranks 2 and 4 want it.
  const auto t = make_tracker(6, {{0, {7}, {"x"}}}, {{3, {7}, {"x"}}});
  const wants_t wants = {{}, {}, {7}, {}, {7}};
  auto from = [](int root) {
    return plan{.ranks = 6,
                .stages = {{broadcast_step{.root = root, .dsts = {2, 4}, .ids = {7}, .keys = {"x"}}}}};
  };
  // Nodes {0,1} {2,3} {4,5}: rank 3 shares a node with target 2, rank 0 with none.
  CHECK(broadcast(t, wants, {"x"}, {.ranks_per_node = 2, .key_groups = {}}) == from(3));
  // One rank per node: nobody is local, the lower rank wins.
  CHECK(broadcast(t, wants, {"x"}, {}) == from(0));

  // The count matters: with nodes {0,1,2} {3,4,5}, rank 5 shares a node with targets 3 and 4, rank 0 only
  // with 1.
  const auto t2 = make_tracker(6, {{0, {7}, {"x"}}}, {{5, {7}, {"x"}}});
  const wants_t wants2 = {{}, {7}, {}, {7}, {7}};
  const plan expected2{.ranks = 6,
                       .stages = {{broadcast_step{.root = 5, .dsts = {1, 3, 4}, .ids = {7}, .keys = {"x"}}}}};
  CHECK(broadcast(t2, wants2, {"x"}, {.ranks_per_node = 3, .key_groups = {}}) == expected2);
}

TEST_CASE("broadcast: among equally local sources the least loaded sends; load counts destinations") {
  // Ids 1..4 on ranks 0 and 1; nodes {0,1,2} {3,4}, so both sources are always equally local.
  const auto t = make_tracker(5, {{0, {1, 2, 3, 4}, {"x"}}}, {{1, {1, 2, 3, 4}, {"x"}}});
  const wants_t wants = {{}, {}, {1, 2}, {1}, {3, 4}};
  // id 1 -> {2,3}: loads 0/0, rank 0 (load 2). id 2 -> {2}: rank 1 (load 1). id 3 -> {4}: loads 2/1, rank 1
  // (load 2). id 4 -> {4}: loads 2/2, rank 0. Counting transfers instead would send 3 from rank 0 and 4
  // from 1. Sorted: (0,{2,3}) (0,{4}) (1,{2}) (1,{4}); (0,{4}) cannot join stage 0 (root 0 is busy), (1,{2})
  // neither (target 2 is busy) and goes to stage 1, (1,{4}) fits stage 0.
  const plan expected{.ranks = 5,
                      .stages = {{broadcast_step{.root = 0, .dsts = {2, 3}, .ids = {1}, .keys = {"x"}},
                                  broadcast_step{.root = 1, .dsts = {4}, .ids = {3}, .keys = {"x"}}},
                                 {broadcast_step{.root = 0, .dsts = {4}, .ids = {4}, .keys = {"x"}},
                                  broadcast_step{.root = 1, .dsts = {2}, .ids = {2}, .keys = {"x"}}}}};
  CHECK(broadcast(t, wants, {"x"}, {.ranks_per_node = 3, .key_groups = {}}) == expected);
}

TEST_CASE("broadcast: equally local and loaded sources: the lowest rank sends, owner or not") {
  const auto t = make_tracker(4, {{3, {5}, {"x"}}}, {{2, {5}, {"x"}}, {1, {5}, {"x"}}});
  const wants_t wants = {{5}};
  const plan expected{.ranks = 4,
                      .stages = {{broadcast_step{.root = 1, .dsts = {0}, .ids = {5}, .keys = {"x"}}}}};
  CHECK(broadcast(t, wants, {"x"}, {}) == expected);
}

TEST_CASE("broadcast: an (id, key) every wanter already holds moves nowhere") {
  // Ranks 1 and 2 want id 1: both hold it for x, only rank 1 for y.
  const auto t = make_tracker(3, {{0, {1}, {"x", "y"}}}, {{1, {1}, {"x", "y"}}, {2, {1}, {"x"}}});
  const wants_t wants = {{}, {1}, {1}};
  const plan expected{.ranks = 3,
                      .stages = {{broadcast_step{.root = 0, .dsts = {2}, .ids = {1}, .keys = {"y"}}}}};
  CHECK(broadcast(t, wants, {"x", "y"}, {}) == expected);
}

TEST_CASE("broadcast: steps with a common root or target take separate stages, disjoint ones share") {
  // 1, 2 on rank 0; 3 on rank 1; 4 on rank 2. Rank 3 wants 1 and 3, rank 4 wants 2, rank 5 wants 4.
  const auto t = make_tracker(6, {{0, {1, 2}, {"x"}}, {1, {3}, {"x"}}, {2, {4}, {"x"}}});
  const wants_t wants = {{}, {}, {}, {1, 3}, {2}, {4}};
  // In order (0,{3}) (0,{4}) (1,{3}) (2,{5}): (0,{4}) shares root 0 with stage 0, (1,{3}) target 3.
  const plan expected{.ranks = 6,
                      .stages = {{broadcast_step{.root = 0, .dsts = {3}, .ids = {1}, .keys = {"x"}},
                                  broadcast_step{.root = 2, .dsts = {5}, .ids = {4}, .keys = {"x"}}},
                                 {broadcast_step{.root = 0, .dsts = {4}, .ids = {2}, .keys = {"x"}},
                                  broadcast_step{.root = 1, .dsts = {3}, .ids = {3}, .keys = {"x"}}}}};
  CHECK(broadcast(t, wants, {"x"}, {}) == expected);
}

TEST_CASE("broadcast: identical steps of one key group merge in requested order; different ids do not") {
  // Ids 1..3, keys x y z, all on rank 0; rank 1 already holds (3, z) and wants 1, 2, 3.
  const auto t = make_tracker(2, {{0, {1, 2, 3}, {"x", "y", "z"}}}, {{1, {3}, {"z"}}});
  const wants_t wants = {{}, {1, 2, 3}};
  const keys_t keys = {"y", "x", "z"};
  auto step = [](id_list ids, keys_t k) {
    return broadcast_step{.root = 0, .dsts = {1}, .ids = std::move(ids), .keys = std::move(k)};
  };
  // Same root: one stage each, ids {1,2} sorting before {1,2,3}.
  CHECK(broadcast(t, wants, keys, {}) ==
        plan{.ranks = 2, .stages = {{step({1, 2}, {"z"})}, {step({1, 2, 3}, {"y", "x"})}}});
  // Separate groups for x and y: y's step sorts first, being requested first.
  CHECK(broadcast(t, wants, keys, {.ranks_per_node = 1, .key_groups = {{"x"}, {"y", "z"}}}) ==
        plan{.ranks = 2,
             .stages = {{step({1, 2}, {"z"})}, {step({1, 2, 3}, {"y"})}, {step({1, 2, 3}, {"x"})}}});
}

// ---- both ----

TEST_CASE("planners: the plan does not depend on the order of the tracker's records") {
  struct record {
    bool owns;
    int rank;
    redist::sample_id id;
    std::string key;
  };
  for (std::uint32_t seed : {1u, 2u, 3u, 4u}) {
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const int ranks = 8;
    const keys_t key_names = {"k0", "k1", "k2"};
    auto rank_dist = std::uniform_int_distribution<int>(0, ranks - 1);
    std::vector<record> records;
    std::vector<redist::sample_id> ids;
    for (redist::sample_id n = 0; n < 40; ++n) {
      const redist::sample_id id = 1000 + 37 * n;
      ids.push_back(id);
      for (const auto& key : key_names) {
        const int owner = rank_dist(rng);
        records.push_back({true, owner, id, key});
        for (int r = 0; r < ranks; ++r)
          if (r != owner && rng() % 4 == 0) records.push_back({false, r, id, key});
      }
    }
    wants_t wants(static_cast<std::size_t>(ranks));
    for (auto& w : wants) {
      for (auto id : ids)
        if (rng() % 3 == 0) w.push_back(id);
      std::shuffle(w.begin(), w.end(), rng);
    }
    auto build = [&](const std::vector<record>& recs) {
      redist::storage_tracker::builder b(ranks);
      for (const auto& r : recs) r.owns ? b.own(r.rank, r.id, r.key, 8) : b.hold(r.rank, r.id, r.key);
      return std::move(b).build();
    };
    auto shuffled = records;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    auto keys_reversed = records;  // k2 is seen first, then k1, then k0
    std::stable_sort(keys_reversed.begin(), keys_reversed.end(),
                     [](const record& a, const record& b) { return a.key > b.key; });
    const keys_t keys = {"k1", "k2", "k0"};
    const plan_options options{.ranks_per_node = 2, .key_groups = {{"k1", "k0"}, {"k2"}}};
    const auto original = build(records);
    for (auto planner : {&gather_scatter, &broadcast}) {
      const plan expected = planner(original, wants, keys, options);
      CHECK(expected.step_count() > 0);
      CHECK(planner(build(shuffled), wants, keys, options) == expected);
      CHECK(planner(build(keys_reversed), wants, keys, options) == expected);
    }
  }
}

TEST_CASE("planners: request errors name the planner, the rank, the id and the key") {
  const auto t = make_tracker(3, {{0, {1}, {"x"}}});
  using planner_fn = plan (*)(const redist::storage_tracker&, std::span<const id_list>,
                              std::span<const std::string>, const plan_options&);
  const std::pair<std::string, planner_fn> planners[] = {
      {"redist::plan_gather_scatter", &redist::plan_gather_scatter},
      {"redist::plan_broadcast", &redist::plan_broadcast}};
  const wants_t good = {{}, {1}};
  const wants_t missing = {{}, {1, 99}};
  const wants_t too_many = {{}, {1}, {}, {1}};
  const keys_t x = {"x"};
  const keys_t unknown = {"x", "nope"};
  for (const auto& entry : planners) {
    const std::string& name = entry.first;  // not a structured binding: clang 14 cannot capture those in INFO
    const planner_fn planner = entry.second;
    INFO(name);
    CHECK(planner(t, good, x, {}).step_count() == 1);
    CHECK_THROWS_WITH_AS(planner(t, good, unknown, {}),
                         (name + ": unknown key 'nope': no rank holds it").c_str(), redist::error);
    CHECK_THROWS_WITH_AS(planner(t, missing, x, {}),
                         (name + ": rank 1 wants id 99, which no rank holds").c_str(), redist::error);
    CHECK_THROWS_WITH_AS(planner(t, too_many, x, {}),
                         (name + ": wants names 4 ranks but the tracker has 3").c_str(), redist::error);
  }
}

}  // namespace
