// redist::topology: named process-grid dims in a fixed order and the row-major map between ranks and
// coordinates. Like DeepSpeed's / Megatron's ProcessTopology: the first dim varies slowest, the last fastest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redist/core/error.hpp"

namespace redist {

// A grid of ranks with named dims, e.g. topology({{"pipe", 2}, {"data", 4}, {"tensor", 2}}) has 16 ranks and
// rank = (pipe * 4 + data) * 2 + tensor. Ranks are ranks of whatever communicator the topology is laid over.
//
// A topology with zero dims (the default) has exactly one rank, 0, with no coordinates: the empty product, so
// code written for any number of dims also covers a process that is not split at all.
class topology {
 public:
  // A dim name with an integer: its extent when building a topology, a coordinate when naming a position.
  using dim_value = std::pair<std::string_view, int>;

  topology() = default;

  // Dims in order, slowest first. Names must be non-empty and distinct, extents at least 1, and the product
  // of the extents must fit in an int (ranks are MPI ranks).
  topology(std::initializer_list<dim_value> dims) : topology(std::span<const dim_value>(dims)) {}

  explicit topology(std::span<const dim_value> dims) {
    names_.reserve(dims.size());
    extents_.reserve(dims.size());
    std::int64_t product = 1;
    for (const auto& [name, extent] : dims) {
      if (name.empty()) detail::fail("redist::topology: dim ", names_.size(), " has an empty name");
      if (has_dim(name)) detail::fail("redist::topology: dim '", name, "' appears twice");
      if (extent < 1)
        detail::fail("redist::topology: dim '", name, "' has extent ", extent, ", must be at least 1");
      product *= extent;  // cannot overflow int64: both factors are at most INT_MAX
      if (product > std::numeric_limits<int>::max()) {
        detail::fail("redist::topology: dim '", name, "' with extent ", extent, " brings the size to ",
                     product, ", more than the largest int");
      }
      names_.emplace_back(name);
      extents_.push_back(extent);
    }
    size_ = static_cast<int>(product);
    strides_.assign(extents_.size(), 1);
    for (std::size_t d = extents_.size(); d-- > 1;) strides_[d - 1] = strides_[d] * extents_[d];
  }

  int size() const noexcept { return size_; }
  std::size_t ndims() const noexcept { return names_.size(); }
  std::span<const std::string> dim_names() const noexcept { return names_; }
  std::span<const int> extents() const noexcept { return extents_; }

  bool has_dim(std::string_view name) const noexcept { return find(name) < names_.size(); }
  std::size_t dim_index(std::string_view name) const {
    return index_or_fail("redist::topology::dim_index", name);
  }
  int extent(std::string_view name) const {
    return extents_[index_or_fail("redist::topology::extent", name)];
  }

  // Coordinates in dim order, one per dim.
  int rank_of(std::span<const int> coords) const {
    if (coords.size() != names_.size()) {
      detail::fail("redist::topology::rank_of: got ", coords.size(), " coordinates for ", names_.size(),
                   " dims (", joined_names(), ")");
    }
    int rank = 0;
    for (std::size_t d = 0; d < coords.size(); ++d) {
      check_coord("redist::topology::rank_of", d, coords[d]);
      rank += coords[d] * strides_[d];
    }
    return rank;
  }
  int rank_of(std::initializer_list<int> coords) const { return rank_of(std::span<const int>(coords)); }

  // Every dim exactly once by name, in any order: rank_of({{"tensor", 1}, {"pipe", 0}, {"data", 3}}).
  int rank_of(std::span<const dim_value> named) const {
    constexpr const char* fn = "redist::topology::rank_of";
    std::vector<int> coords(names_.size(), -1);
    for (const auto& [name, value] : named) {
      const std::size_t d = index_or_fail(fn, name);
      if (coords[d] != -1) detail::fail(fn, ": dim '", name, "' given twice");
      check_coord(fn, d, value);
      coords[d] = value;
    }
    for (std::size_t d = 0; d < coords.size(); ++d) {
      if (coords[d] == -1) detail::fail(fn, ": no coordinate for dim '", names_[d], "'");
    }
    return rank_of(std::span<const int>(coords));
  }
  int rank_of(std::initializer_list<dim_value> named) const {
    return rank_of(std::span<const dim_value>(named));
  }

  std::vector<int> coords_of(int rank) const {
    check_rank("redist::topology::coords_of", rank);
    std::vector<int> coords(names_.size());
    for (std::size_t d = 0; d < coords.size(); ++d) coords[d] = rank / strides_[d] % extents_[d];
    return coords;
  }

  int coord(int rank, std::string_view dim) const {
    constexpr const char* fn = "redist::topology::coord";
    check_rank(fn, rank);
    const std::size_t d = index_or_fail(fn, dim);
    return rank / strides_[d] % extents_[d];
  }

  // The ascending ranks whose coordinates equal every given (dim, value); dims left out are free. A negative
  // value counts from the end, so {{"tensor", 0}, {"pipe", -1}} is "tensor 0 of the last pipeline stage".
  // No filter at all gives every rank. A dim given twice is an error (it is always a mistake).
  std::vector<int> ranks_where(std::span<const dim_value> filter) const {
    constexpr const char* fn = "redist::topology::ranks_where";
    std::vector<bool> fixed(names_.size(), false);
    int base = 0;
    for (const auto& [name, value] : filter) {
      const std::size_t d = index_or_fail(fn, name);
      if (fixed[d]) detail::fail(fn, ": dim '", name, "' given twice");
      if (value < -extents_[d] || value >= extents_[d]) {
        detail::fail(fn, ": value ", value, " for dim '", name, "' is out of range [", -extents_[d], ", ",
                     extents_[d], ")");
      }
      fixed[d] = true;
      base += (value < 0 ? value + extents_[d] : value) * strides_[d];
    }
    // Counting through the free dims' coordinates row-major (last free dim fastest) visits the matching ranks
    // in ascending order, so no sort is needed.
    int count = 1;
    for (std::size_t d = 0; d < fixed.size(); ++d) count *= fixed[d] ? 1 : extents_[d];
    std::vector<int> ranks;
    ranks.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      int rank = base;
      int rest = i;
      for (std::size_t d = fixed.size(); d-- > 0;) {
        if (fixed[d]) continue;
        rank += rest % extents_[d] * strides_[d];
        rest /= extents_[d];
      }
      ranks.push_back(rank);
    }
    return ranks;
  }
  std::vector<int> ranks_where(std::initializer_list<dim_value> filter) const {
    return ranks_where(std::span<const dim_value>(filter));
  }

  // Same dims, same order, same extents.
  friend bool operator==(const topology&, const topology&) = default;

 private:
  std::size_t find(std::string_view name) const noexcept {
    std::size_t d = 0;
    while (d < names_.size() && names_[d] != name) ++d;
    return d;
  }

  std::size_t index_or_fail(const char* fn, std::string_view name) const {
    const std::size_t d = find(name);
    if (d == names_.size()) detail::fail(fn, ": unknown dim '", name, "'; dims are ", joined_names());
    return d;
  }

  void check_coord(const char* fn, std::size_t d, int value) const {
    if (value < 0 || value >= extents_[d]) {
      detail::fail(fn, ": coordinate ", value, " for dim '", names_[d], "' is out of range [0, ", extents_[d],
                   ")");
    }
  }

  void check_rank(const char* fn, int rank) const {
    if (rank < 0 || rank >= size_) detail::fail(fn, ": rank ", rank, " is out of range [0, ", size_, ")");
  }

  std::string joined_names() const {
    if (names_.empty()) return "(none)";
    std::string out;
    for (const auto& name : names_) out += (out.empty() ? "" : ", ") + name;
    return out;
  }

  std::vector<std::string> names_;
  std::vector<int> extents_;
  std::vector<int> strides_;  // strides_[d]: how far apart in rank two ranks one step apart along dim d are
  int size_ = 1;
};

}  // namespace redist
