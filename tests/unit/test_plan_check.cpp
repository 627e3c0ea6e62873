// Tests of redist::check_plan: correct hand-built plans of every step kind pass with the right counts, and
// each kind of broken plan (lost route, source without the data, bad rank or payload, steps of one stage that
// depend on each other, wrong rank count) is reported, with its message.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "redist/plan/check.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace {

using redist::all_to_all_step;
using redist::broadcast_step;
using redist::gather_step;
using redist::id_list;
using redist::plan;
using redist::plan_check;
using redist::scatter_step;
using keys_t = std::vector<std::string>;
using wants_t = std::vector<id_list>;

// Rank 0 owns ids 1, 2 and rank 1 owns id 3, keys x and y; rank 3 holds a copy of (2, x).
redist::storage_tracker tracker() {
  redist::storage_tracker::builder b(4);
  for (const char* k : {"x", "y"}) {
    b.own(0, 1, k, 8).own(0, 2, k, 8).own(1, 3, k, 8);
  }
  b.hold(3, 2, "x");
  return std::move(b).build();
}
// Rank 2 wants 1 and 3, rank 3 wants 2: five (rank, id, key) to deliver, (3, 2, x) being there already.
const wants_t wants = {{}, {}, {1, 3}, {2}};
const keys_t keys = {"x", "y"};

plan_check check(const plan& p) { return redist::check_plan(p, tracker(), wants, keys); }

void check_counts(const plan_check& c, std::size_t deliveries, std::size_t redundant, std::size_t unwanted,
                  std::size_t missing) {
  CHECK(c.deliveries == deliveries);
  CHECK(c.redundant == redundant);
  CHECK(c.unwanted == unwanted);
  CHECK(c.missing == missing);
}

const gather_step gather{.root = 0, .srcs = {0, 1}, .ids = {{1, 2}, {3}}, .keys = {"x", "y"}};
const scatter_step scatter{.root = 0, .dsts = {2, 3}, .ids = {{1, 3}, {2}}, .keys = {"x", "y"}};

// The one-hop plan: rank 0 sends 1 (x, y) to rank 2 and 2 (y) to rank 3; rank 1 sends 3 (x, y) to rank 2.
all_to_all_step one_hop() {
  return {.keys = {"x", "y"},
          .payloads = {{0, 0, {1}}, {0, 1, {1}}, {1, 0, {3}}, {1, 1, {3}}, {0, 1, {2}}},
          .routes = {{0, 2, 0}, {0, 2, 1}, {0, 3, 4}, {1, 2, 2}, {1, 2, 3}}};
}
plan one_step(all_to_all_step s) { return plan{.ranks = 4, .stages = {{std::move(s)}}}; }

TEST_CASE("check_plan: gather then scatter through a root that relays") {
  const auto c = check(plan{.ranks = 4, .stages = {{gather}, {scatter}}});
  CHECK(c.ok());
  CHECK(c.problems.empty());
  CHECK(c.problem_count == 0);
  // Gather: (3, x) and (3, y) reach root 0, which wants neither. Scatter: four to rank 2, two to rank 3 of
  // which (2, x) it held already.
  check_counts(c, 8, 1, 2, 0);
}

TEST_CASE("check_plan: broadcasts, and an all-to-all, deliver exactly what is wanted") {
  const plan broadcasts{.ranks = 4,
                        .stages = {{broadcast_step{.root = 0, .dsts = {2}, .ids = {1}, .keys = {"x", "y"}},
                                    broadcast_step{.root = 1, .dsts = {2}, .ids = {3}, .keys = {"x", "y"}}},
                                   {broadcast_step{.root = 0, .dsts = {3}, .ids = {2}, .keys = {"y"}}}}};
  const auto b = check(broadcasts);
  CHECK(b.ok());
  check_counts(b, 5, 0, 0, 0);

  const auto a = check(one_step(one_hop()));
  CHECK(a.ok());
  CHECK(a.problems.empty());
  check_counts(a, 5, 0, 0, 0);

  // Sending (2, x) too, to a rank that holds it, and 2 to rank 2, which does not want it: still correct.
  auto more = one_hop();
  more.payloads[4].key = 0;
  more.payloads.push_back({0, 1, {2}});
  more.routes = {{0, 2, 0}, {0, 2, 1}, {0, 2, 4}, {0, 3, 4}, {0, 3, 5}, {1, 2, 2}, {1, 2, 3}};
  const auto m = check(one_step(more));
  CHECK(m.ok());
  check_counts(m, 7, 1, 1, 0);

  // A broadcast to the root itself and a gather from the root itself deliver nothing.
  const plan self{.ranks = 4,
                  .stages = {{broadcast_step{.root = 0, .dsts = {0}, .ids = {1}, .keys = {"x"}}},
                             {gather_step{.root = 1, .srcs = {1}, .ids = {{3}}, .keys = {"x", "y"}}}}};
  const auto s = redist::check_plan(self, tracker(), wants_t{}, keys);
  CHECK(s.ok());
  check_counts(s, 0, 0, 0, 0);
}

TEST_CASE("check_plan: nothing to do; an empty plan when something is wanted") {
  const auto none =
      redist::check_plan(plan{.ranks = 4, .stages = {}}, tracker(), wants_t{{1, 2}, {3}, {}, {}}, keys);
  CHECK(none.ok());
  check_counts(none, 0, 0, 0, 0);

  const auto c = check(plan{.ranks = 4, .stages = {}});
  CHECK_FALSE(c.ok());
  check_counts(c, 0, 0, 0, 5);
  CHECK(c.problem_count == 5);
  CHECK(c.problems.size() == 5);
}

TEST_CASE("check_plan: a lost route leaves its data missing") {
  auto s = one_hop();
  s.routes.erase(s.routes.begin() + 2);  // (0 -> 3, payload 4): 2, y
  const auto c = check(one_step(s));
  CHECK_FALSE(c.ok());
  check_counts(c, 4, 0, 0, 1);
  CHECK(c.problem_count == 1);
  CHECK(c.problems == std::vector<std::string>{"rank 3 lacks id 2, key 'y' at the end"});

  // The same in a scatter that leaves out rank 3.
  scatter_step short_scatter = scatter;
  short_scatter.dsts = {2};
  short_scatter.ids = {{1, 3}};
  const auto d = check(plan{.ranks = 4, .stages = {{gather}, {short_scatter}}});
  CHECK_FALSE(d.ok());
  check_counts(d, 6, 0, 2, 1);
  CHECK(d.problems == std::vector<std::string>{"rank 3 lacks id 2, key 'y' at the end"});
}

TEST_CASE("check_plan: a source that does not hold what it sends") {
  auto s = one_hop();
  s.payloads[4].src = 2;  // rank 2 has nothing
  s.routes[2].src = 2;
  const auto c = check(one_step(s));
  CHECK_FALSE(c.ok());
  CHECK(c.problem_count == 2);
  CHECK(c.problems ==
        std::vector<std::string>{"stage 0 step 0: rank 2 sends id 2, key 'y', which it does not hold",
                                 "rank 3 lacks id 2, key 'y' at the end"});
  check_counts(c, 4, 0, 0, 1);

  // A broadcast root that holds the key x of id 2 but not y.
  const plan b{.ranks = 4,
               .stages = {{broadcast_step{.root = 3, .dsts = {2}, .ids = {2}, .keys = {"x", "y"}}}}};
  const auto d = redist::check_plan(b, tracker(), wants_t{{}, {}, {2}}, keys);
  CHECK_FALSE(d.ok());
  CHECK(d.problems ==
        std::vector<std::string>{"stage 0 step 0: rank 3 sends id 2, key 'y', which it does not hold",
                                 "rank 2 lacks id 2, key 'y' at the end"});
  check_counts(d, 1, 0, 0, 1);

  // An id or a key the tracker does not know.
  const plan u{.ranks = 4,
               .stages = {{broadcast_step{.root = 0, .dsts = {2}, .ids = {99}, .keys = {"x"}}},
                          {broadcast_step{.root = 0, .dsts = {2}, .ids = {1}, .keys = {"z"}}}}};
  const auto e = redist::check_plan(u, tracker(), wants_t{}, keys);
  CHECK(e.problems ==
        std::vector<std::string>{"stage 0 step 0: rank 0 sends id 99, key 'x', which it does not hold",
                                 "stage 1 step 0: unknown key 'z'"});
}

TEST_CASE("check_plan: ranks out of range, bad payload indices, routes that use another rank's payload") {
  SUBCASE("destination out of range") {
    auto s = one_hop();
    s.routes.push_back({1, 4, 2});
    const auto c = check(one_step(s));
    CHECK_FALSE(c.ok());
    CHECK(c.problems == std::vector<std::string>{"stage 0 step 0: rank 4 is out of range"});
  }
  SUBCASE("negative source") {
    auto s = one_hop();
    s.payloads.push_back({-1, 0, {1}});
    s.routes.insert(s.routes.begin(), {-1, 2, 5});
    const auto c = check(one_step(s));
    CHECK_FALSE(c.ok());
    CHECK(c.problems == std::vector<std::string>{"stage 0 step 0: rank -1 is out of range"});
    check_counts(c, 5, 0, 0, 0);
  }
  SUBCASE("broadcast, gather and scatter ranks out of range") {
    const plan p{.ranks = 4,
                 .stages = {{broadcast_step{.root = 0, .dsts = {9}, .ids = {1}, .keys = {"x"}}},
                            {gather_step{.root = -2, .srcs = {1}, .ids = {{3}}, .keys = {"x"}}},
                            {scatter_step{.root = 4, .dsts = {2}, .ids = {{1}}, .keys = {"x"}}}}};
    const auto c = redist::check_plan(p, tracker(), wants_t{}, keys);
    CHECK(c.problems == std::vector<std::string>{"stage 0 step 0: rank 9 is out of range",
                                                 "stage 1 step 0: rank -2 is out of range",
                                                 "stage 2 step 0: rank 4 is out of range"});
  }
  SUBCASE("payload index out of range") {
    auto s = one_hop();
    s.routes[2].payload = 5;
    const auto c = check(one_step(s));
    CHECK_FALSE(c.ok());
    CHECK(c.problems == std::vector<std::string>{"stage 0 step 0: route to rank 3 names payload 5 of 5",
                                                 "rank 3 lacks id 2, key 'y' at the end"});
    check_counts(c, 4, 0, 0, 1);
  }
  SUBCASE("route source differs from its payload's") {
    auto s = one_hop();
    s.routes[2].src = 1;  // rank 1 routes rank 0's payload 4
    const auto c = check(one_step(s));
    CHECK_FALSE(c.ok());
    CHECK(c.problems == std::vector<std::string>{"stage 0 step 0: route from rank 1 uses payload 4 of rank 0",
                                                 "rank 3 lacks id 2, key 'y' at the end"});
  }
  SUBCASE("payload key out of range") {
    auto s = one_hop();
    s.payloads[4].key = 2;
    const auto c = check(one_step(s));
    CHECK_FALSE(c.ok());
    CHECK(c.problem_count == 2);
    CHECK(c.missing == 1);
  }
  SUBCASE("id lists that do not match the ranks") {
    gather_step g = gather;
    g.ids = {{1, 2}};
    scatter_step sc = scatter;
    sc.ids.push_back({3});
    const auto c = check(plan{.ranks = 4, .stages = {{g}, {sc}}});
    CHECK_FALSE(c.ok());
    REQUIRE(c.problems.size() >= 2);
    CHECK(c.problems[0] == "stage 0 step 0: gather has 1 id lists for 2 sources");
    CHECK(c.problems[1] == "stage 1 step 0: scatter has 3 id lists for 2 destinations");
  }
}

TEST_CASE("check_plan: a step may use only what arrived in earlier stages") {
  // Gather and scatter in one stage: the scatter's root does not yet hold id 3.
  const auto c = check(plan{.ranks = 4, .stages = {{gather, scatter}}});
  CHECK_FALSE(c.ok());
  CHECK(c.problem_count == 4);
  REQUIRE(c.problems.size() == 4);
  CHECK(c.problems[0] == "stage 0 step 1: rank 0 sends id 3, key 'x', which it does not hold");
  CHECK(c.problems[1] == "stage 0 step 1: rank 0 sends id 3, key 'y', which it does not hold");
  check_counts(c, 6, 1, 2, 2);
  // In the next stage it passes.
  CHECK(check(plan{.ranks = 4, .stages = {{gather}, {scatter}}}).ok());

  // A relay through all-to-all steps: rank 1 sends 3 (x) to rank 0, which passes it on to rank 2.
  const all_to_all_step first{.keys = {"x"}, .payloads = {{1, 0, {3}}}, .routes = {{1, 0, 0}}};
  const all_to_all_step second{.keys = {"x"}, .payloads = {{0, 0, {3}}}, .routes = {{0, 2, 0}}};
  const wants_t w = {{}, {}, {3}};
  const keys_t x = {"x"};
  const auto same = redist::check_plan(plan{.ranks = 4, .stages = {{first, second}}}, tracker(), w, x);
  CHECK_FALSE(same.ok());
  CHECK(same.problems ==
        std::vector<std::string>{"stage 0 step 1: rank 0 sends id 3, key 'x', which it does not hold",
                                 "rank 2 lacks id 3, key 'x' at the end"});
  check_counts(same, 1, 0, 1, 1);
  const auto next = redist::check_plan(plan{.ranks = 4, .stages = {{first}, {second}}}, tracker(), w, x);
  CHECK(next.ok());
  check_counts(next, 2, 0, 1, 0);
}

TEST_CASE("check_plan: a plan for another number of ranks; wants the tracker does not know") {
  auto p = plan{.ranks = 4, .stages = {{gather}, {scatter}}};
  p.ranks = 5;
  const auto c = check(p);
  CHECK_FALSE(c.ok());
  CHECK(c.problems == std::vector<std::string>{"the plan is for 5 ranks, the tracker has 4"});
  p.ranks = 3;
  CHECK(check(p).problems == std::vector<std::string>{"the plan is for 3 ranks, the tracker has 4"});

  const auto u =
      redist::check_plan(plan{.ranks = 4, .stages = {}}, tracker(), wants_t{{}, {}, {99}}, keys_t{"x"});
  CHECK_FALSE(u.ok());
  CHECK(u.problems ==
        std::vector<std::string>{"rank 2 wants id 99, key 'x', which the tracker does not know"});
  const auto k = redist::check_plan(plan{.ranks = 4, .stages = {}}, tracker(), wants_t{{1}}, keys_t{"w"});
  CHECK_FALSE(k.ok());
  CHECK(k.problems ==
        std::vector<std::string>{"rank 0 wants id 1, key 'w', which the tracker does not know"});
}

TEST_CASE("check_plan: the first 20 problems are kept, all are counted") {
  // 25 unknown ids wanted for two keys: 50 problems.
  id_list many;
  for (redist::sample_id id = 100; id < 125; ++id) many.push_back(id);
  const auto c = redist::check_plan(plan{.ranks = 4, .stages = {}}, tracker(), wants_t{many}, keys);
  CHECK_FALSE(c.ok());
  CHECK(c.problem_count == 50);
  REQUIRE(c.problems.size() == 20);
  CHECK(c.problems[0] == "rank 0 wants id 100, key 'x', which the tracker does not know");
  CHECK(c.problems[19] == "rank 0 wants id 109, key 'y', which the tracker does not know");
}

// Last in the file: before the fix it reads past the end of a vector (a crash under the sanitizers).
TEST_CASE("check_plan: wants for more ranks than the tracker has is a problem, not a crash") {
  const auto c =
      redist::check_plan(plan{.ranks = 4, .stages = {}}, tracker(), wants_t{{}, {}, {}, {}, {1}, {2}}, keys);
  CHECK_FALSE(c.ok());
  CHECK(c.problem_count >= 1);
}

}  // namespace
