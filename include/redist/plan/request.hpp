// What every planner is asked: which ids each rank wants, which keys, and where ranks sit. The request is
// checked and resolved to tracker positions once, here, with errors that name the rank, the id and the key.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/detail/hash.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist {

struct plan_options {
  // Rank r sits on node r / ranks_per_node; sources on a destination's node are preferred.
  int ranks_per_node = 1;
  // Keys moved by separate steps (e.g. one group per dtype for float32 staging on NCCL). Empty: one group
  // with every requested key. Otherwise the groups must partition the requested keys.
  std::vector<std::vector<std::string>> key_groups = {};
};

namespace detail {

// A request in tracker positions. Ranks that want the same ids in the same order share one list.
struct resolved_request {
  static constexpr std::uint32_t none = UINT32_MAX;
  std::vector<std::size_t> keys;                  // tracker key positions, in the order requested
  std::vector<std::vector<std::size_t>> groups;   // positions into `keys`, one entry per step group
  std::vector<std::vector<std::uint32_t>> lists;  // distinct wanted lists, tracker id positions, order kept
  std::vector<std::uint32_t> list_of;             // per rank: index into lists, or none
};

inline resolved_request resolve_request(const char* who, const storage_tracker& tracker,
                                        std::span<const id_list> wants, std::span<const std::string> keys,
                                        const plan_options& options) {
  const int ranks = tracker.ranks();
  if (wants.size() > static_cast<std::size_t>(ranks))
    fail(who, ": wants names ", wants.size(), " ranks but the tracker has ", ranks);
  if (options.ranks_per_node < 1)
    fail(who, ": ranks_per_node is ", options.ranks_per_node, ", must be at least 1");
  resolved_request r;
  for (const auto& key : keys) {
    const auto k = tracker.find_key(key);
    if (!k) fail(who, ": unknown key '", key, "': no rank holds it");
    if (std::find(r.keys.begin(), r.keys.end(), *k) != r.keys.end())
      fail(who, ": key '", key, "' requested twice");
    r.keys.push_back(*k);
  }
  if (options.key_groups.empty()) {
    r.groups.emplace_back(r.keys.size());
    for (std::size_t j = 0; j < r.keys.size(); ++j) r.groups[0][j] = j;
  } else {
    std::vector<bool> covered(keys.size(), false);
    for (const auto& g : options.key_groups) {
      auto& out = r.groups.emplace_back();
      for (const auto& key : g) {
        const auto at = std::find(keys.begin(), keys.end(), key);
        if (at == keys.end()) fail(who, ": key group names '", key, "', which is not requested");
        const auto j = static_cast<std::size_t>(at - keys.begin());
        if (covered[j]) fail(who, ": key '", key, "' is in two key groups");
        covered[j] = true;
        out.push_back(j);
      }
    }
    for (std::size_t j = 0; j < keys.size(); ++j)
      if (!covered[j]) fail(who, ": key '", keys[j], "' is in no key group");
  }

  // Identical lists (replicas) are resolved once: hash, then compare with the lists of the same hash.
  r.list_of.assign(static_cast<std::size_t>(ranks), resolved_request::none);
  std::unordered_multimap<std::uint64_t, std::uint32_t> by_hash;
  std::vector<const id_list*> originals;
  for (std::size_t rank = 0; rank < wants.size(); ++rank) {
    const id_list& w = wants[rank];
    if (w.empty()) continue;
    const std::uint64_t h = fingerprint().add_all(w).value();
    std::uint32_t found = resolved_request::none;
    for (auto [it, end] = by_hash.equal_range(h); it != end; ++it)
      if (*originals[it->second] == w) found = it->second;
    if (found == resolved_request::none) {
      found = static_cast<std::uint32_t>(r.lists.size());
      auto& list = r.lists.emplace_back();
      list.reserve(w.size());
      for (sample_id id : w) {
        const auto i = tracker.find_id(id);
        if (!i) fail(who, ": rank ", rank, " wants id ", id, ", which no rank holds");
        for (std::size_t k : r.keys)
          if (!tracker.has(*i, k))
            fail(who, ": rank ", rank, " wants id ", id, ", key '", tracker.keys()[k],
                 "', which no rank holds");
        list.push_back(static_cast<std::uint32_t>(*i));
      }
      std::vector<std::uint32_t> sorted = list;
      std::sort(sorted.begin(), sorted.end());
      const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
      if (dup != sorted.end()) fail(who, ": rank ", rank, " wants id ", tracker.ids()[*dup], " twice");
      originals.push_back(&w);
      by_hash.emplace(h, found);
    }
    r.list_of[rank] = found;
  }
  return r;
}

}  // namespace detail
}  // namespace redist
