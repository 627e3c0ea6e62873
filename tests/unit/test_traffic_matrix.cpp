// Unit tests of redist::dense_traffic, to_dense, dense_traffic_of and nccl_tests_matrix: a literal plan
// worked by hand (cells, row and column sums, the busiest rank, the file's exact text), entries out of range,
// and one-hop plans of drawn batches against the matrix computed from the owners and the wanted ids alone.
#include "redist/plan/traffic_file.hpp"

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "error_of.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "splitmix.hpp"

namespace {

using redist::plan;
using redist::storage_tracker;
using u64 = std::uint64_t;

// The numbers of a matrix file, line by line, read back the way alltoallv_perf reads them (whitespace).
std::vector<std::vector<u64>> read_back(const std::string& text) {
  std::vector<std::vector<u64>> rows;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream cells(line);
    rows.emplace_back();
    u64 v = 0;
    while (cells >> v) rows.back().push_back(v);
  }
  return rows;
}

}  // namespace

TEST_CASE("dense_traffic: a gather then a scatter, worked by hand") {
  // Three ranks; rank r owns id 10 + r, key "a" of 100 (r + 1) bytes, key "b" of 1000 (r + 1) bytes.
  storage_tracker::builder b(3);
  for (int r = 0; r < 3; ++r) {
    const auto id = static_cast<redist::sample_id>(10 + r);
    b.own(r, id, "a", 100u * static_cast<u64>(r + 1)).own(r, id, "b", 1000u * static_cast<u64>(r + 1));
  }
  const storage_tracker t = std::move(b).build();
  plan p{3, {}};
  p.stages.push_back({redist::gather_step{0, {0, 1, 2}, {{10}, {11}, {12}}, {"a", "b"}}});
  p.stages.push_back({redist::scatter_step{0, {1, 2}, {{10, 12}, {11}}, {"a"}}});
  const redist::dense_traffic d = redist::dense_traffic_of(p, t);
  // 1 -> 0: id 11 (200 + 2000); 2 -> 0: id 12 (300 + 3000); 0 -> 1: ids 10, 12 key a (100 + 300); 0 -> 2:
  // 200.
  CHECK(d.ranks == 3);
  CHECK(d.bytes == std::vector<u64>{0, 400, 200, 2200, 0, 0, 3300, 0, 0});
  CHECK(d.at(2, 0) == 3300);
  CHECK(d.sent_by(0) == 600);
  CHECK(d.received_by(0) == 5500);
  CHECK(d.busiest() == 5500);
  CHECK(redist::nccl_tests_matrix(d) == "0 400 200\n2200 0 0\n3300 0 0\n");
}

TEST_CASE("to_dense: pairs add up, the empty plan is all zeros, a rank out of range is refused") {
  const std::vector<redist::traffic_entry> twice{{0, 1, 5}, {0, 1, 7}};
  CHECK(redist::to_dense(twice, 2).bytes == std::vector<u64>{0, 12, 0, 0});
  const auto none = redist::to_dense({}, 2);
  CHECK(none.bytes == std::vector<u64>{0, 0, 0, 0});
  CHECK(none.busiest() == 0);
  CHECK(redist::nccl_tests_matrix(none) == "0 0\n0 0\n");
  CHECK(redist::nccl_tests_matrix(redist::to_dense({}, 0)).empty());
  const std::vector<redist::traffic_entry> bad{{0, 2, 1}};
  CHECK(redist::test::error_of([&] { redist::to_dense(bad, 2); }) ==
        "redist::to_dense: entry 0 -> 2 is out of range for 2 ranks");
}

TEST_CASE("dense_traffic_of: one-hop plans of drawn batches carry exactly what each consumer lacks") {
  for (u64 seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    const int ranks = static_cast<int>(1 + redist::test::draw(seed, 0) % 8);
    const auto n = static_cast<std::size_t>(ranks);
    const std::size_t ids = 5 + redist::test::draw(seed, 1) % 40;
    const std::vector<std::string> keys{"a", "b"};
    // Each id has one holder, so the planner has one source for it: the expected matrix needs no planner.
    std::vector<int> owner(ids);
    std::vector<u64> size(ids);  // both keys together
    storage_tracker::builder b(ranks);
    for (std::size_t i = 0; i < ids; ++i) {
      owner[i] = static_cast<int>(redist::test::draw(seed, 2, i) % n);
      const u64 a = redist::test::draw(seed, 3, i) % 5000, c = redist::test::draw(seed, 4, i) % 70;
      b.own(owner[i], i, "a", a).own(owner[i], i, "b", c);
      size[i] = a + c;
    }
    const storage_tracker t = std::move(b).build();
    std::vector<redist::id_list> wants(n);
    std::vector<u64> expected(n * n, 0);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t i = 0; i < ids; ++i)
        if (redist::test::draw(seed, 5, r, i) % 3 == 0) {
          wants[r].push_back(i);
          if (static_cast<std::size_t>(owner[i]) != r)
            expected[static_cast<std::size_t>(owner[i]) * n + r] += size[i];
        }
    const redist::dense_traffic d = redist::dense_traffic_of(redist::plan_all_to_all(t, wants, keys), t);
    CHECK(d.bytes == expected);
    // The file holds the same numbers, one line per source rank.
    const auto rows = read_back(redist::nccl_tests_matrix(d));
    REQUIRE(rows.size() == n);
    for (std::size_t s = 0; s < n; ++s)
      CHECK(rows[s] == std::vector<u64>(expected.begin() + static_cast<std::ptrdiff_t>(s * n),
                                        expected.begin() + static_cast<std::ptrdiff_t>((s + 1) * n)));
  }
}
