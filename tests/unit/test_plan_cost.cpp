// Unit tests of redist::estimate_cost, traffic_matrix and describe: hand-computed costs of literal plans
// (gather -> scatter, broadcast, all-to-all with a shared payload, self-transfers, hop chains), errors, and
// the planners' plans against totals computed independently from the tracker and the request.
#include "redist/plan/cost.hpp"
#include "redist/plan/describe.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace {

using redist::all_to_all_step;
using redist::broadcast_step;
using redist::gather_step;
using redist::plan;
using redist::scatter_step;
using redist::storage_tracker;
using redist::traffic_entry;
using u64 = std::uint64_t;

// Four ranks; rank r owns id 10 + r with key "a" of 100 * (r + 1) bytes and key "b" of 1000 * (r + 1) bytes.
// Rank 1 also holds id 10.
storage_tracker four_ranks() {
  storage_tracker::builder b(4);
  for (int r = 0; r < 4; ++r) {
    const auto id = static_cast<redist::sample_id>(10 + r);
    b.own(r, id, "a", 100u * static_cast<u64>(r + 1));
    b.own(r, id, "b", 1000u * static_cast<u64>(r + 1));
  }
  b.hold(1, 10, "a").hold(1, 10, "b");
  return std::move(b).build();
}

plan gather_then_scatter() {
  plan p{4, {}};
  p.stages.push_back({gather_step{0, {0, 1, 2, 3}, {{10}, {11}, {12}, {13}}, {"a"}}});
  p.stages.push_back({scatter_step{0, {0, 1, 2, 3}, {{10, 11}, {10, 11}, {12, 13}, {12, 13}}, {"a"}}});
  return p;
}

}  // namespace

TEST_CASE("estimate_cost: gather then scatter, worked by hand") {
  const auto t = four_ranks();
  const auto c = redist::estimate_cost(gather_then_scatter(), t);
  // Gather: 1->0 200, 2->0 300, 3->0 400 (0->0 is free). Scatter: 0->1 300, 0->2 700, 0->3 700.
  REQUIRE(c.steps.size() == 2);
  CHECK(c.steps[0].kind == "gather");
  CHECK(c.steps[0].stage == 0);
  CHECK(c.steps[0].ranks == std::vector<int>{0, 1, 2, 3});
  CHECK(c.steps[0].sent == std::vector<u64>{0, 200, 300, 400});
  CHECK(c.steps[0].received == std::vector<u64>{900, 0, 0, 0});
  CHECK(c.steps[0].wire_bytes == 900);
  CHECK(c.steps[0].bottleneck_rank == 0);
  CHECK(c.steps[0].bottleneck_bytes == 900);
  CHECK(c.steps[0].collective_calls == 1);
  CHECK(c.steps[1].kind == "scatter");
  CHECK(c.steps[1].stage == 1);
  CHECK(c.steps[1].sent == std::vector<u64>{1700, 0, 0, 0});
  CHECK(c.steps[1].received == std::vector<u64>{0, 300, 700, 700});
  CHECK(c.steps[1].wire_bytes == 1700);
  CHECK(c.steps[1].sent_by(0) == 1700);
  CHECK(c.steps[1].received_by(2) == 700);

  CHECK(c.wire_bytes == 2600);
  CHECK(c.sent == std::vector<u64>{1700, 200, 300, 400});
  CHECK(c.received == std::vector<u64>{900, 300, 700, 700});
  CHECK(c.bottleneck_rank == 0);
  CHECK(c.bottleneck_bytes == 2600);
  CHECK(c.hops == 2);  // id 11 goes 1 -> 0 -> 1
  CHECK(c.collective_calls == 2);

  CHECK(redist::traffic_matrix(gather_then_scatter(), t) ==
        std::vector<traffic_entry>{
            {0, 1, 300}, {0, 2, 700}, {0, 3, 700}, {1, 0, 200}, {2, 0, 300}, {3, 0, 400}});

  const auto text = redist::describe(gather_then_scatter(), t);
  INFO(text);
  CHECK(text.find("totals: wire 2.54 KiB (2600 B), bottleneck rank 0 2.54 KiB (2600 B), hops 2, collective "
                  "calls 2") != std::string::npos);
  CHECK(text.find("gather") != std::string::npos);
  CHECK(text.find("scatter") != std::string::npos);
}

TEST_CASE("estimate_cost: a gather-scatter whose root holds every id has one hop") {
  const auto t = four_ranks();
  plan p{4, {}};
  p.stages.push_back({scatter_step{1, {0, 2}, {{10, 11}, {11}}, {"a", "b"}}});
  const auto c = redist::estimate_cost(p, t);
  CHECK(c.wire_bytes == 3300 + 2200);
  CHECK(c.hops == 1);
}

TEST_CASE("estimate_cost: a broadcast costs root -> each destination") {
  const auto t = four_ranks();
  plan p{4, {}};
  p.stages.push_back({broadcast_step{1, {0, 2, 3}, {10, 11}, {"a", "b"}}});
  const auto c = redist::estimate_cost(p, t);
  constexpr u64 each = 100 + 200 + 1000 + 2000;
  REQUIRE(c.steps.size() == 1);
  CHECK(c.steps[0].kind == "broadcast");
  CHECK(c.steps[0].ranks == std::vector<int>{0, 1, 2, 3});
  CHECK(c.steps[0].sent == std::vector<u64>{0, 3 * each, 0, 0});
  CHECK(c.steps[0].received == std::vector<u64>{each, 0, each, each});
  CHECK(c.wire_bytes == 3 * each);
  CHECK(c.bottleneck_rank == 1);
  CHECK(c.bottleneck_bytes == 3 * each);
  CHECK(c.hops == 1);
  CHECK(c.collective_calls == 1);
  CHECK(redist::traffic_matrix(p, t) == std::vector<traffic_entry>{{1, 0, each}, {1, 2, each}, {1, 3, each}});
}

TEST_CASE("estimate_cost: an all-to-all counts a shared payload once per route") {
  const auto t = four_ranks();
  all_to_all_step a;
  a.keys = {"a", "b"};
  a.payloads = {{0, 0, {10}}, {1, 1, {11}}, {0, 1, {10}}};  // 100, 2000 and 1000 bytes
  a.routes = {{0, 1, 0}, {0, 2, 0}, {0, 2, 2}, {1, 0, 1}, {1, 1, 1}, {1, 3, 1}};
  plan p{4, {{a}}};
  const auto c = redist::estimate_cost(p, t);
  REQUIRE(c.steps.size() == 1);
  CHECK(c.steps[0].kind == "all_to_all");
  CHECK(c.steps[0].sent == std::vector<u64>{1200, 4000, 0, 0});
  CHECK(c.steps[0].received == std::vector<u64>{2000, 100, 1100, 2000});
  CHECK(c.wire_bytes == 5200);  // the route 1 -> 1 is free
  CHECK(c.bottleneck_rank == 1);
  CHECK(c.bottleneck_bytes == 4100);
  CHECK(c.hops == 1);
  CHECK(c.collective_calls == 1);
  CHECK(redist::traffic_matrix(p, t) ==
        std::vector<traffic_entry>{{0, 1, 100}, {0, 2, 1100}, {1, 0, 2000}, {1, 3, 2000}});
}

TEST_CASE("estimate_cost: transfers from a rank to itself are not on the wire") {
  const auto t = four_ranks();
  plan p{4, {}};
  p.stages.push_back({gather_step{2, {2}, {{12}}, {"a"}}});
  p.stages.push_back({scatter_step{3, {3}, {{13}}, {"a", "b"}}});
  const auto c = redist::estimate_cost(p, t);
  CHECK(c.wire_bytes == 0);
  CHECK(c.bottleneck_rank == -1);
  CHECK(c.bottleneck_bytes == 0);
  CHECK(c.hops == 0);
  CHECK(c.collective_calls == 2);  // the calls are still made
  REQUIRE(c.steps.size() == 2);
  CHECK(c.steps[0].ranks == std::vector<int>{2});
  CHECK(c.steps[0].sent == std::vector<u64>{0});
  CHECK(c.steps[0].bottleneck_rank == -1);
  CHECK(redist::traffic_matrix(p, t).empty());
  CHECK(redist::describe(p, t).find("totals: wire 0 B, bottleneck rank -1 0 B, hops 0, collective calls 2") !=
        std::string::npos);
}

TEST_CASE("estimate_cost: hops follow chains across stages, not within one") {
  const auto t = four_ranks();
  SUBCASE("a relay chain 0 -> 1 -> 2 -> 3 of id 11 is three hops") {
    // Rank 1 owns 11; relay it 1 -> 0 -> 2 -> 3.
    plan p{4, {}};
    p.stages.push_back({broadcast_step{1, {0}, {11}, {"a"}}});
    p.stages.push_back({broadcast_step{0, {2}, {11}, {"a"}}});
    p.stages.push_back({broadcast_step{2, {3}, {11}, {"a"}}});
    CHECK(redist::estimate_cost(p, t).hops == 3);
    CHECK(redist::estimate_cost(p, t).wire_bytes == 600);
  }
  SUBCASE("steps of one stage see the holdings at the stage start") {
    plan p{4, {}};
    p.stages.push_back({broadcast_step{1, {0}, {11}, {"a"}}, broadcast_step{0, {2}, {11}, {"a"}}});
    CHECK(redist::estimate_cost(p, t).hops == 1);
    // Rank 0 gets id 11 in stage 0 and relays it in stage 1 while rank 2 relays it on in the same stage: rank
    // 2 sends what it held at the stage start, so the chain 1 -> 0 -> 2 -> 3 is not made (2 hops, not 3).
    plan q{4, {}};
    q.stages.push_back({broadcast_step{1, {0}, {11}, {"a"}}});
    q.stages.push_back({broadcast_step{0, {2}, {11}, {"a"}}, broadcast_step{2, {3}, {11}, {"a"}}});
    q.stages.push_back({broadcast_step{2, {1}, {12}, {"a"}}});
    CHECK(redist::estimate_cost(q, t).hops == 2);
    q.stages[1].pop_back();
    q.stages.push_back({broadcast_step{2, {3}, {11}, {"a"}}});
    CHECK(redist::estimate_cost(q, t).hops == 3);
  }
  SUBCASE("a rank that held the data before a copy arrived forwards it at depth 0") {
    plan p{4, {}};
    p.stages.push_back({broadcast_step{0, {1}, {10}, {"a"}}});  // rank 1 already holds id 10
    p.stages.push_back({broadcast_step{1, {2}, {10}, {"a"}}});
    CHECK(redist::estimate_cost(p, t).hops == 1);
  }
  SUBCASE("a relayed key and a direct key in later stages") {
    plan p{4, {}};
    p.stages.push_back({gather_step{0, {2, 3}, {{12}, {13}}, {"a", "b"}}});
    p.stages.push_back({broadcast_step{0, {1}, {10}, {"b"}}});      // held from the start: 1 hop
    p.stages.push_back({broadcast_step{0, {1}, {12, 13}, {"b"}}});  // gathered first: 2 hops
    p.stages.push_back({broadcast_step{3, {1}, {13}, {"a"}}});      // owner: 1 hop
    CHECK(redist::estimate_cost(p, t).hops == 2);
    p.stages.pop_back();
    p.stages.pop_back();
    CHECK(redist::estimate_cost(p, t).hops == 1);
  }
}

TEST_CASE("traffic_matrix sums a pair over steps") {
  const auto t = four_ranks();
  plan p{4, {}};
  p.stages.push_back({broadcast_step{2, {0, 3}, {12}, {"a"}}});
  p.stages.push_back({broadcast_step{2, {0}, {12}, {"b"}}, broadcast_step{1, {3}, {11}, {"a"}}});
  CHECK(redist::traffic_matrix(p, t) ==
        std::vector<traffic_entry>{{1, 3, 200}, {2, 0, 300 + 3000}, {2, 3, 300}});
}

TEST_CASE("estimate_cost: errors name the step and what the tracker does not know") {
  const auto t = four_ranks();
  auto message = [&](const plan& p) {
    try {
      (void)redist::estimate_cost(p, t);
    } catch (const redist::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message(plan{5, {}}) == "redist::estimate_cost: the plan is for 5 ranks, the tracker has 4");
  CHECK(message(plan{4, {{broadcast_step{0, {1}, {99}, {"a"}}}}}) ==
        "redist::estimate_cost: stage 0, step 0: unknown id 99");
  CHECK(message(plan{4, {{broadcast_step{0, {1}, {10}, {"zz"}}}}}) ==
        "redist::estimate_cost: stage 0, step 0: unknown key 'zz'");
  CHECK(message(plan{4, {{}, {broadcast_step{0, {4}, {10}, {"a"}}}}}) ==
        "redist::estimate_cost: stage 1, step 0: rank 4 is out of range");
  CHECK(message(plan{4, {{gather_step{0, {1, 2}, {{11}}, {"a"}}}}}) ==
        "redist::estimate_cost: stage 0, step 0: gather has 1 id lists for 2 sources");
  all_to_all_step a{{"a"}, {{0, 0, {10}}}, {{1, 2, 0}}};
  CHECK(message(plan{4, {{a}}}) ==
        "redist::estimate_cost: stage 0, step 0: route from rank 1 uses payload 0 of rank 0");
  a.routes = {{0, 2, 1}};
  CHECK(message(plan{4, {{a}}}) ==
        "redist::estimate_cost: stage 0, step 0: route to rank 2 names payload 1 of 1");
  CHECK_THROWS_AS((void)redist::traffic_matrix(plan{4, {{broadcast_step{0, {1}, {99}, {"a"}}}}}, t),
                  redist::error);

  storage_tracker::builder b(2);
  b.own(0, 1, "a", 8).own(0, 2, "b", 8);
  const auto sparse = std::move(b).build();
  try {
    (void)redist::estimate_cost(plan{2, {{broadcast_step{0, {1}, {1}, {"b"}}}}}, sparse);
    FAIL("no error");
  } catch (const redist::error& e) {
    CHECK(std::string(e.what()) == "redist::estimate_cost: stage 0, step 0: id 1 has no key 'b'");
  }
}

TEST_CASE("describe: a long plan is summarized, with the totals") {
  const auto t = four_ranks();
  plan p{4, {}};
  for (int n = 0; n < 70; ++n) p.stages.push_back({broadcast_step{n % 2 == 0 ? 0 : 1, {3}, {10}, {"a"}}});
  const auto text = redist::describe(p, t);
  INFO(text);
  CHECK(text.find("plan over 4 ranks: 70 steps in 70 stages") != std::string::npos);
  CHECK(text.find("... 54 more steps; by kind:") != std::string::npos);
  CHECK(text.find("broadcast  70 steps, wire 6.84 KiB, heaviest step 100 B") != std::string::npos);
  CHECK(text.find("totals: wire 6.84 KiB (7000 B), bottleneck rank 3 6.84 KiB (7000 B), hops 1, collective "
                  "calls 70") != std::string::npos);
  // 1 title + 1 header + 16 steps + 1 "more" + 1 kind + 1 totals.
  CHECK(std::count(text.begin(), text.end(), '\n') == 21);
}

TEST_CASE("estimate_cost of the planners' plans against totals from the request") {
  const auto seed = std::random_device{}();
  std::cout << "test_plan_cost: seed " << seed << "\n";
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const int ranks = 12;
  const std::vector<std::string> keys{"k0", "k1"};
  storage_tracker::builder b(ranks);
  const int samples = 40;
  std::vector<std::vector<u64>> bytes(samples, std::vector<u64>(2));
  std::vector<std::vector<bool>> held(ranks, std::vector<bool>(samples, false));
  for (int i = 0; i < samples; ++i) {
    const int owner = static_cast<int>(rng() % 4);
    for (std::size_t k = 0; k < 2; ++k) {
      bytes[static_cast<std::size_t>(i)][k] = 1 + rng() % 1000;
      b.own(owner, static_cast<redist::sample_id>(i), keys[k], bytes[static_cast<std::size_t>(i)][k]);
    }
    held[static_cast<std::size_t>(owner)][static_cast<std::size_t>(i)] = true;
    if (rng() % 3 == 0) {
      const int copy = static_cast<int>(rng() % ranks);
      for (const auto& k : keys) b.hold(copy, static_cast<redist::sample_id>(i), k);
      held[static_cast<std::size_t>(copy)][static_cast<std::size_t>(i)] = true;
    }
  }
  const auto t = std::move(b).build();
  std::vector<redist::id_list> wants(ranks);
  u64 must_move = 0;
  for (int r = 0; r < ranks; ++r)
    for (int i = 0; i < samples; ++i)
      if (rng() % 3 == 0) {
        wants[static_cast<std::size_t>(r)].push_back(static_cast<redist::sample_id>(i));
        if (!held[static_cast<std::size_t>(r)][static_cast<std::size_t>(i)])
          must_move += bytes[static_cast<std::size_t>(i)][0] + bytes[static_cast<std::size_t>(i)][1];
      }

  for (const auto& p :
       {redist::plan_all_to_all(t, wants, keys, {.ranks_per_node = 4, .key_groups = {}}),
        redist::plan_all_to_all(t, wants, keys, {.ranks_per_node = 1, .key_groups = {{"k1"}, {"k0"}}}),
        redist::plan_broadcast(t, wants, keys, {.ranks_per_node = 4, .key_groups = {}}),
        redist::plan_gather_scatter(t, wants, keys)}) {
    const auto c = redist::estimate_cost(p, t);
    // The one-hop and broadcast plans send each missing (rank, id, key) once, straight from a holder.
    const bool direct = !std::holds_alternative<gather_step>(p.stages.front().front()) &&
                        !std::holds_alternative<scatter_step>(p.stages.front().front());
    if (direct) {
      CHECK(c.wire_bytes == must_move);
      CHECK(c.hops == 1);
    } else {
      CHECK(c.wire_bytes >= must_move);
      CHECK(c.hops == 2);
    }
    CHECK(c.collective_calls == p.step_count());
    // The traffic matrix, the per-rank totals and the per-step figures all add up to the same bytes.
    const auto m = redist::traffic_matrix(p, t);
    std::vector<u64> rows(ranks, 0), cols(ranks, 0);
    u64 sum = 0;
    for (std::size_t n = 0; n < m.size(); ++n) {
      CHECK(m[n].src != m[n].dst);
      if (n > 0) CHECK(std::tie(m[n - 1].src, m[n - 1].dst) < std::tie(m[n].src, m[n].dst));
      rows[static_cast<std::size_t>(m[n].src)] += m[n].bytes;
      cols[static_cast<std::size_t>(m[n].dst)] += m[n].bytes;
      sum += m[n].bytes;
    }
    CHECK(sum == c.wire_bytes);
    CHECK(rows == c.sent);
    CHECK(cols == c.received);
    u64 steps = 0;
    for (const auto& s : c.steps) steps += s.wire_bytes;
    CHECK(steps == c.wire_bytes);
    u64 most = 0;
    for (int r = 0; r < ranks; ++r)
      most = std::max(most, rows[static_cast<std::size_t>(r)] + cols[static_cast<std::size_t>(r)]);
    CHECK(c.bottleneck_bytes == most);
  }
}
