// redist::plan_gather_scatter: the reference planner's "gather-scatter" pattern, reproduced step for step.
// Every owner gathers to one root, which scatters to every consumer: each byte crosses the wire twice.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/plan/request.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist {

namespace detail {

// Appends `s` (one key), or adds its key to an earlier step of the same key group that moves the same ids
// between the same ranks. Requests name few keys, so a linear scan is cheaper than hashing id lists.
template <class Step>
void add_or_merge(std::vector<std::pair<Step, std::size_t>>& steps, Step s, std::size_t group,
                  std::vector<int> Step::*ranks) {
  for (auto& [t, g] : steps) {
    if (g == group && t.root == s.root && t.*ranks == s.*ranks && t.ids == s.ids) {
      t.keys.push_back(std::move(s.keys.front()));
      return;
    }
  }
  steps.emplace_back(std::move(s), group);
}

}  // namespace detail

// wants[r]: the ids rank r must end up holding, for every key of `keys`; ranks past wants.size() want
// nothing. One gather (owners -> lowest owner) and one scatter (that root -> every consumer) per key; a
// gather is left out when its root already holds every wanted id, both when every consumer already holds its
// ids. Steps that differ only in their key are merged within a key group. All gathers come first, each step
// in its own stage: steps of different keys may share ranks.
inline plan plan_gather_scatter(const storage_tracker& tracker, std::span<const id_list> wants,
                                std::span<const std::string> keys, const plan_options& options = {}) {
  const auto req = detail::resolve_request("redist::plan_gather_scatter", tracker, wants, keys, options);
  const int ranks = tracker.ranks();
  const auto ids = tracker.ids();
  auto values = [&](const std::vector<std::uint32_t>& positions) {
    id_list out;
    out.reserve(positions.size());
    for (auto i : positions) out.push_back(ids[i]);
    return out;
  };

  // Tracker id positions ascend with the ids, so sorting positions sorts by id value.
  std::vector<std::vector<std::uint32_t>> sorted = req.lists;
  std::vector<std::uint32_t> wanted;
  for (auto& list : sorted) {
    std::sort(list.begin(), list.end());
    wanted.insert(wanted.end(), list.begin(), list.end());
  }
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());

  std::vector<int> dsts;  // the consumers, and their ids: the same for every key
  std::vector<id_list> dst_ids;
  for (int r = 0; r < ranks; ++r) {
    const auto list = req.list_of[static_cast<std::size_t>(r)];
    if (list == detail::resolved_request::none) continue;
    dsts.push_back(r);
    dst_ids.push_back(values(sorted[list]));
  }
  std::vector<std::size_t> group_of(req.keys.size());
  for (std::size_t g = 0; g < req.groups.size(); ++g)
    for (std::size_t j : req.groups[g]) group_of[j] = g;

  std::vector<std::pair<gather_step, std::size_t>> gathers;  // with their key group
  std::vector<std::pair<scatter_step, std::size_t>> scatters;
  for (std::size_t j = 0; j < req.keys.size() && !wanted.empty(); ++j) {
    const std::size_t k = req.keys[j];
    bool delivered = true;
    for (std::size_t d = 0; d < dsts.size() && delivered; ++d)
      for (auto i : sorted[req.list_of[static_cast<std::size_t>(dsts[d])]])
        if (!tracker.holds(dsts[d], i, k)) {
          delivered = false;
          break;
        }
    if (delivered) continue;

    // (owner, id position) sorted: owners ascending, each owner's ids ascending.
    std::vector<std::pair<int, std::uint32_t>> owned;
    owned.reserve(wanted.size());
    for (auto i : wanted) owned.emplace_back(tracker.owner(i, k), i);
    std::sort(owned.begin(), owned.end());
    gather_step gather{.root = owned.front().first, .srcs = {}, .ids = {}, .keys = {keys[j]}};
    for (const auto& [owner, i] : owned) {
      if (gather.srcs.empty() || gather.srcs.back() != owner) {
        gather.srcs.push_back(owner);
        gather.ids.emplace_back();
      }
      gather.ids.back().push_back(ids[i]);
    }
    const bool root_has_all =
        std::all_of(wanted.begin(), wanted.end(), [&](auto i) { return tracker.holds(gather.root, i, k); });
    const int root = gather.root;
    if (!root_has_all) detail::add_or_merge(gathers, std::move(gather), group_of[j], &gather_step::srcs);
    // Destinations and ids are the same for every key (added at the end): scatters merge on equal roots.
    detail::add_or_merge(scatters, scatter_step{.root = root, .dsts = {}, .ids = {}, .keys = {keys[j]}},
                         group_of[j], &scatter_step::dsts);
  }

  plan out{.ranks = ranks, .stages = {}};
  for (auto& g : gathers) out.stages.emplace_back().emplace_back(std::move(g.first));  // no copy, unlike {g}
  for (auto& s : scatters) {
    s.first.dsts = dsts;
    s.first.ids = dst_ids;
    out.stages.emplace_back().emplace_back(std::move(s.first));
  }
  return out;
}

}  // namespace redist
