// The staging layer's streams and windows: the (sample, key) items one sender sends one receiver in wire
// order, cut into windows of rounds that fit the staging budget. Every rank computes every stream's windows
// alike, from lengths alone.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "redist/core/sequence_batch.hpp"
#include "redist/staging/policy.hpp"

namespace redist {

// One (sample, key) in a stream: the key is a position in the catalog's keys.
struct stream_item {
  sample_id id = 0;
  std::uint32_t key = 0;
};

// The items one sender sends to one receiver, in wire order, with each item's wire offset.
struct stream {
  std::vector<stream_item> items;
  std::vector<std::size_t> offsets{0};  // items.size() + 1 entries
  std::size_t bytes() const noexcept { return offsets.back(); }
};

// Window k of `rounds` of a stream of `bytes` wire bytes: [begin, end), cut on Staging's wire units.
template <staging_policy Staging>
std::pair<std::size_t, std::size_t> staging_window(std::size_t bytes, std::size_t k, std::size_t rounds) {
  const std::size_t units = bytes / Staging::wire_unit;
  auto cut = [&](std::size_t j) { return units * j / rounds * Staging::wire_unit; };
  return {cut(k), k + 1 == rounds ? bytes : cut(k + 1)};
}

// Rounds needed so that no rank stages more than `budget` bytes at once, given the largest per-rank total.
template <staging_policy Staging>
std::size_t staging_rounds(std::size_t largest_total, std::size_t budget) {
  budget = std::max<std::size_t>(budget, Staging::wire_unit);
  return std::max<std::size_t>(1, (largest_total + budget - 1) / budget);
}

// Calls f(item, from, n, at) for each part of an item inside the window [begin, end) of `s`: wire bytes
// [from, from + n) of the item lie at window offset `at`.
template <class F>
void for_parts(const stream& s, std::size_t begin, std::size_t end, F f) {
  auto i = static_cast<std::size_t>(std::upper_bound(s.offsets.begin(), s.offsets.end(), begin) -
                                    s.offsets.begin());
  for (i = i == 0 ? 0 : i - 1; i < s.items.size() && s.offsets[i] < end; ++i) {
    const std::size_t a = std::max(begin, s.offsets[i]), b = std::min(end, s.offsets[i + 1]);
    if (a < b) f(s.items[i], a - s.offsets[i], b - a, a - begin);
  }
}

}  // namespace redist
