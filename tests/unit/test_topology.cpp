// Unit tests of redist::topology: the rank <-> coordinate map against an independent row-major formula,
// ranks_where against brute-force filtering, and every error with its message.
#include "redist/core/topology.hpp"

#include <doctest/doctest.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redist/core/error.hpp"

namespace {

using redist::topology;
using dims_t = std::vector<std::pair<std::string_view, int>>;

// Every coordinate tuple in row-major order (last dim fastest), by counting like an odometer.
std::vector<std::vector<int>> all_coords(const std::vector<int>& extents) {
  std::vector<std::vector<int>> out;
  std::vector<int> c(extents.size(), 0);
  while (true) {
    out.push_back(c);
    std::size_t d = extents.size();
    while (d > 0) {
      --d;
      if (++c[d] < extents[d]) break;
      c[d] = 0;
      if (d == 0) return out;
    }
    if (extents.empty()) return out;
  }
}

// Horner's rule: rank = ((c0 * e1 + c1) * e2 + c2) ...
int row_major_rank(const std::vector<int>& coords, const std::vector<int>& extents) {
  int rank = 0;
  for (std::size_t d = 0; d < coords.size(); ++d) rank = rank * extents[d] + coords[d];
  return rank;
}

std::vector<int> extents_of(const dims_t& dims) {
  std::vector<int> e;
  for (const auto& dim : dims) e.push_back(dim.second);
  return e;
}

const std::vector<dims_t> cases = {
    {},
    {{"x", 7}},
    {{"pipe", 2}, {"data", 2}, {"tensor", 2}},
    {{"pipe", 2}, {"data", 3}, {"tensor", 4}},
    {{"a", 1}, {"b", 3}, {"c", 1}, {"d", 2}},
    {{"one", 1}},
};

}  // namespace

TEST_CASE("topology: size, dims and extents") {
  const topology t({{"pipe", 2}, {"data", 4}, {"tensor", 3}});
  CHECK(t.size() == 24);
  CHECK(t.ndims() == 3);
  REQUIRE(t.dim_names().size() == 3);
  CHECK(t.dim_names()[0] == "pipe");
  CHECK(t.dim_names()[1] == "data");
  CHECK(t.dim_names()[2] == "tensor");
  CHECK(std::vector<int>(t.extents().begin(), t.extents().end()) == std::vector<int>{2, 4, 3});
  CHECK(t.extent("pipe") == 2);
  CHECK(t.extent("data") == 4);
  CHECK(t.extent("tensor") == 3);
  CHECK(t.dim_index("pipe") == 0);
  CHECK(t.dim_index("tensor") == 2);
  CHECK(t.has_dim("data"));
  CHECK_FALSE(t.has_dim("dat"));
  CHECK_FALSE(t.has_dim(""));
  // rank = (pipe * 4 + data) * 3 + tensor
  CHECK(t.rank_of({1, 2, 0}) == 18);
  CHECK(t.coords_of(23) == std::vector<int>{1, 3, 2});
}

TEST_CASE("topology: zero dims is a single rank") {
  const topology t;
  CHECK(t.size() == 1);
  CHECK(t.ndims() == 0);
  CHECK(t.dim_names().empty());
  CHECK(t.rank_of(std::span<const int>{}) == 0);
  CHECK(t.rank_of(std::span<const topology::dim_value>{}) == 0);
  CHECK(t.coords_of(0).empty());
  CHECK(t.ranks_where(std::span<const topology::dim_value>{}) == std::vector<int>{0});
  CHECK(t == topology(std::span<const topology::dim_value>{}));
}

TEST_CASE("topology: rank_of and coords_of round trip against the row-major formula") {
  for (const auto& dims : cases) {
    const topology t{std::span<const topology::dim_value>(dims)};
    const std::vector<int> extents = extents_of(dims);
    const auto coords = all_coords(extents);
    CAPTURE(dims.size());
    REQUIRE(static_cast<int>(coords.size()) == t.size());
    for (std::size_t k = 0; k < coords.size(); ++k) {
      const int expected = row_major_rank(coords[k], extents);
      CHECK(expected == static_cast<int>(k));  // the odometer and the formula agree
      CHECK(t.rank_of(coords[k]) == expected);
      CHECK(t.coords_of(expected) == coords[k]);
      for (std::size_t d = 0; d < dims.size(); ++d) CHECK(t.coord(expected, dims[d].first) == coords[k][d]);
    }
  }
}

TEST_CASE("topology: the named rank_of accepts the dims in any order") {
  const topology t({{"pipe", 2}, {"data", 3}, {"tensor", 4}});
  for (int rank = 0; rank < t.size(); ++rank) {
    const auto c = t.coords_of(rank);
    CHECK(t.rank_of({{"pipe", c[0]}, {"data", c[1]}, {"tensor", c[2]}}) == rank);
    CHECK(t.rank_of({{"tensor", c[2]}, {"pipe", c[0]}, {"data", c[1]}}) == rank);
    CHECK(t.rank_of({{"data", c[1]}, {"tensor", c[2]}, {"pipe", c[0]}}) == rank);
    const std::vector<topology::dim_value> named = {{"tensor", c[2]}, {"data", c[1]}, {"pipe", c[0]}};
    CHECK(t.rank_of(named) == rank);
  }
}

TEST_CASE("topology: ranks_where matches brute-force filtering") {
  for (const auto& dims : cases) {
    const topology t{std::span<const topology::dim_value>(dims)};
    const std::vector<int> extents = extents_of(dims);
    const auto coords = all_coords(extents);
    // Every subset of the dims as the filtered ones, every value for each (negative ones too).
    for (unsigned mask = 0; mask < (1u << dims.size()); ++mask) {
      std::vector<std::size_t> fixed;
      std::vector<int> fixed_extents;
      for (std::size_t d = 0; d < dims.size(); ++d) {
        if (mask & (1u << d)) {
          fixed.push_back(d);
          fixed_extents.push_back(2 * extents[d]);  // values -e .. e-1, shifted by e
        }
      }
      for (const auto& shifted : all_coords(fixed_extents)) {
        std::vector<topology::dim_value> filter;
        std::vector<int> wanted(dims.size(), -1);
        for (std::size_t i = 0; i < fixed.size(); ++i) {
          const int e = extents[fixed[i]];
          const int value = shifted[i] - e;
          filter.emplace_back(dims[fixed[i]].first, value);
          wanted[fixed[i]] = value < 0 ? value + e : value;
        }
        std::vector<int> expected;
        for (std::size_t k = 0; k < coords.size(); ++k) {
          bool match = true;
          for (std::size_t d = 0; d < dims.size(); ++d)
            match = match && (wanted[d] < 0 || coords[k][d] == wanted[d]);
          if (match) expected.push_back(static_cast<int>(k));
        }
        CAPTURE(mask);
        CHECK(t.ranks_where(filter) == expected);
      }
    }
  }
}

TEST_CASE("topology: ranks_where with an initializer list and negative values") {
  const topology t({{"pipe", 2}, {"data", 2}, {"tensor", 2}});
  // rank = pipe * 4 + data * 2 + tensor
  CHECK(t.ranks_where({{"tensor", 0}, {"pipe", -1}}) == std::vector<int>{4, 6});
  CHECK(t.ranks_where({{"pipe", 1}, {"tensor", 0}}) == std::vector<int>{4, 6});
  CHECK(t.ranks_where({{"data", -2}}) == std::vector<int>{0, 1, 4, 5});
  CHECK(t.ranks_where({{"pipe", 0}, {"data", 1}, {"tensor", -1}}) == std::vector<int>{3});
  CHECK(t.ranks_where(std::span<const topology::dim_value>{}) == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("topology: equality") {
  const topology a({{"pipe", 2}, {"data", 4}});
  CHECK(a == topology({{"pipe", 2}, {"data", 4}}));
  CHECK(a != topology({{"data", 4}, {"pipe", 2}}));
  CHECK(a != topology({{"pipe", 2}, {"data", 2}}));
  CHECK(a != topology({{"pipe", 2}, {"dp", 4}}));
  CHECK(a != topology({{"pipe", 2}, {"data", 4}, {"tensor", 1}}));
  CHECK(a != topology());
  topology b;
  b = a;
  CHECK(b == a);
}

TEST_CASE("topology: construction errors") {
  using redist::error;
  CHECK_THROWS_WITH_AS(topology({{"pipe", 2}, {"", 2}}), "redist::topology: dim 1 has an empty name", error);
  CHECK_THROWS_WITH_AS(topology({{"data", 2}, {"pipe", 2}, {"data", 3}}),
                       "redist::topology: dim 'data' appears twice", error);
  CHECK_THROWS_WITH_AS(topology({{"pipe", 2}, {"data", 0}}),
                       "redist::topology: dim 'data' has extent 0, must be at least 1", error);
  CHECK_THROWS_WITH_AS(topology({{"tensor", -3}}),
                       "redist::topology: dim 'tensor' has extent -3, must be at least 1", error);
  CHECK_THROWS_WITH_AS(
      topology({{"a", 65536}, {"b", 32768}}),
      "redist::topology: dim 'b' with extent 32768 brings the size to 2147483648, more than the "
      "largest int",
      error);
  CHECK_THROWS_WITH_AS(
      topology({{"a", 2147483647}, {"b", 2147483647}}),
      doctest::Contains("dim 'b' with extent 2147483647 brings the size to 4611686014132420609"), error);
  // The largest size that fits is fine.
  CHECK(topology({{"a", 2147483647}, {"b", 1}}).size() == 2147483647);
}

TEST_CASE("topology: lookup errors name the dim and list the known ones") {
  using redist::error;
  const topology t({{"pipe", 2}, {"data", 3}, {"tensor", 4}});
  CHECK_THROWS_WITH_AS(t.dim_index("expert"),
                       "redist::topology::dim_index: unknown dim 'expert'; dims are pipe, data, tensor",
                       error);
  CHECK_THROWS_WITH_AS(t.extent("Data"),
                       "redist::topology::extent: unknown dim 'Data'; dims are pipe, data, tensor", error);
  CHECK_THROWS_WITH_AS(topology().extent("x"), "redist::topology::extent: unknown dim 'x'; dims are (none)",
                       error);
}

TEST_CASE("topology: rank_of errors") {
  using redist::error;
  const topology t({{"pipe", 2}, {"data", 3}, {"tensor", 4}});
  CHECK_THROWS_WITH_AS(t.rank_of({1, 2}),
                       "redist::topology::rank_of: got 2 coordinates for 3 dims (pipe, data, tensor)", error);
  CHECK_THROWS_WITH_AS(t.rank_of({0, 0, 0, 0}),
                       "redist::topology::rank_of: got 4 coordinates for 3 dims (pipe, data, tensor)", error);
  CHECK_THROWS_WITH_AS(t.rank_of({1, 3, 0}),
                       "redist::topology::rank_of: coordinate 3 for dim 'data' is out of range [0, 3)",
                       error);
  CHECK_THROWS_WITH_AS(t.rank_of({1, 2, -1}),
                       "redist::topology::rank_of: coordinate -1 for dim 'tensor' is out of range [0, 4)",
                       error);
  // Named form.
  CHECK_THROWS_WITH_AS(t.rank_of({{"pipe", 0}, {"tensor", 1}}),
                       "redist::topology::rank_of: no coordinate for dim 'data'", error);
  CHECK_THROWS_WITH_AS(t.rank_of({{"pipe", 0}, {"data", 1}, {"pipe", 1}, {"tensor", 1}}),
                       "redist::topology::rank_of: dim 'pipe' given twice", error);
  CHECK_THROWS_WITH_AS(t.rank_of({{"pipe", 0}, {"data", 1}, {"tensor", 1}, {"expert", 0}}),
                       "redist::topology::rank_of: unknown dim 'expert'; dims are pipe, data, tensor", error);
  CHECK_THROWS_WITH_AS(t.rank_of({{"pipe", 2}, {"data", 1}, {"tensor", 1}}),
                       "redist::topology::rank_of: coordinate 2 for dim 'pipe' is out of range [0, 2)",
                       error);
}

TEST_CASE("topology: coords_of and coord errors") {
  using redist::error;
  const topology t({{"pipe", 2}, {"data", 3}, {"tensor", 4}});
  CHECK_THROWS_WITH_AS(t.coords_of(24), "redist::topology::coords_of: rank 24 is out of range [0, 24)",
                       error);
  CHECK_THROWS_WITH_AS(t.coords_of(-1), "redist::topology::coords_of: rank -1 is out of range [0, 24)",
                       error);
  CHECK_THROWS_WITH_AS(t.coord(24, "data"), "redist::topology::coord: rank 24 is out of range [0, 24)",
                       error);
  CHECK_THROWS_WITH_AS(t.coord(3, "expert"),
                       "redist::topology::coord: unknown dim 'expert'; dims are pipe, data, tensor", error);
  CHECK_THROWS_WITH_AS(topology().coords_of(1), "redist::topology::coords_of: rank 1 is out of range [0, 1)",
                       error);
}

TEST_CASE("topology: ranks_where errors") {
  using redist::error;
  const topology t({{"pipe", 2}, {"data", 3}, {"tensor", 4}});
  CHECK_THROWS_WITH_AS(t.ranks_where({{"expert", 0}}),
                       "redist::topology::ranks_where: unknown dim 'expert'; dims are pipe, data, tensor",
                       error);
  CHECK_THROWS_WITH_AS(t.ranks_where({{"data", 3}}),
                       "redist::topology::ranks_where: value 3 for dim 'data' is out of range [-3, 3)",
                       error);
  CHECK_THROWS_WITH_AS(t.ranks_where({{"pipe", 0}, {"tensor", -5}}),
                       "redist::topology::ranks_where: value -5 for dim 'tensor' is out of range [-4, 4)",
                       error);
  CHECK_THROWS_WITH_AS(t.ranks_where({{"tensor", 0}, {"tensor", 0}}),
                       "redist::topology::ranks_where: dim 'tensor' given twice", error);
}
