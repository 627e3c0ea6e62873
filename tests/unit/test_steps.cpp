// Unit tests of redist::for_each_transfer, the one decoder of a plan's steps: every step kind's transfers in
// the step's order, with the keys and id list each sends, and every malformed shape reported, not decoded.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "redist/plan/steps.hpp"

namespace {

using redist::all_to_all_step;
using redist::broadcast_step;
using redist::gather_step;
using redist::id_list;
using redist::scatter_step;
using redist::step;
using redist::step_transfer;

// A transfer as plain values: src, dst, ids, first key, key count, list.
using flat = std::tuple<int, int, id_list, std::uint32_t, std::uint32_t, std::uint32_t>;

struct decoded {
  std::vector<flat> transfers;
  std::vector<std::string> defects;
};

decoded decode(const step& s) {
  decoded d;
  redist::for_each_transfer(
      s,
      [&](const step_transfer& t) {
        d.transfers.emplace_back(t.src, t.dst, *t.ids, t.first_key, t.key_count, t.list);
      },
      [&](const std::string& defect) { d.defects.push_back(defect); });
  return d;
}

}  // namespace

TEST_CASE("for_each_transfer: a broadcast sends its one list, every key, to each destination") {
  const auto d = decode(broadcast_step{.root = 2, .dsts = {0, 3}, .ids = {7, 5}, .keys = {"a", "b"}});
  CHECK(d.defects.empty());
  CHECK(d.transfers == std::vector<flat>{{2, 0, {7, 5}, 0, 2, 0}, {2, 3, {7, 5}, 0, 2, 0}});
  CHECK(redist::keys_of(step{broadcast_step{.root = 0, .dsts = {}, .ids = {}, .keys = {"a", "b"}}}) ==
        std::vector<std::string>{"a", "b"});
}

TEST_CASE("for_each_transfer: a gather and a scatter, the root among their ranks, one list per rank") {
  const auto g = decode(gather_step{.root = 1, .srcs = {0, 1, 2}, .ids = {{1}, {}, {2, 3}}, .keys = {"x"}});
  CHECK(g.defects.empty());
  CHECK(g.transfers == std::vector<flat>{{0, 1, {1}, 0, 1, 0}, {1, 1, {}, 0, 1, 1}, {2, 1, {2, 3}, 0, 1, 2}});
  const auto s = decode(scatter_step{.root = 0, .dsts = {0, 3}, .ids = {{4}, {5}}, .keys = {"x", "y", "z"}});
  CHECK(s.defects.empty());
  CHECK(s.transfers == std::vector<flat>{{0, 0, {4}, 0, 3, 0}, {0, 3, {5}, 0, 3, 1}});
}

TEST_CASE("for_each_transfer: an all-to-all's routes, each its payload's ids and one key") {
  const all_to_all_step a{.keys = {"x", "y"},
                          .payloads = {{.src = 0, .key = 1, .ids = {3, 1}}, {.src = 1, .key = 0, .ids = {2}}},
                          .routes = {{.src = 0, .dst = 1, .payload = 0},
                                     {.src = 0, .dst = 2, .payload = 0},
                                     {.src = 1, .dst = 0, .payload = 1}}};
  const auto d = decode(a);
  CHECK(d.defects.empty());
  CHECK(d.transfers ==
        std::vector<flat>{{0, 1, {3, 1}, 1, 1, 0}, {0, 2, {3, 1}, 1, 1, 0}, {1, 0, {2}, 0, 1, 1}});
}

TEST_CASE("for_each_transfer: malformed steps are reported and their bad parts skipped") {
  SUBCASE("id lists that do not match the ranks") {
    const auto g = decode(gather_step{.root = 0, .srcs = {1, 2}, .ids = {{1}}, .keys = {"x"}});
    CHECK(g.defects == std::vector<std::string>{"gather has 1 id lists for 2 sources"});
    CHECK(g.transfers == std::vector<flat>{{1, 0, {1}, 0, 1, 0}});
    const auto s = decode(scatter_step{.root = 0, .dsts = {1}, .ids = {{1}, {2}}, .keys = {"x"}});
    CHECK(s.defects == std::vector<std::string>{"scatter has 2 id lists for 1 destinations"});
    CHECK(s.transfers.size() == 1);
  }
  SUBCASE("routes and payloads naming what is not there") {
    const all_to_all_step a{.keys = {"x"},
                            .payloads = {{.src = 0, .key = 0, .ids = {1}}, {.src = 1, .key = 4, .ids = {2}}},
                            .routes = {{.src = 0, .dst = 1, .payload = 0},
                                       {.src = 0, .dst = 2, .payload = 9},
                                       {.src = 2, .dst = 1, .payload = 0},
                                       {.src = 1, .dst = 0, .payload = 1}}};
    const auto d = decode(a);
    CHECK(d.defects == std::vector<std::string>{"route to rank 2 names payload 9 of 2",
                                                "route from rank 2 uses payload 0 of rank 0",
                                                "payload 1 names key 4 of 1"});
    CHECK(d.transfers == std::vector<flat>{{0, 1, {1}, 0, 1, 0}});
  }
}
