// redist::plan_broadcast: the reference planner's "bcast" pattern: each (id, key) goes straight from one
// holder to every rank that lacks it, preferring holders on the receivers' node, then the least loaded
// holder.
#pragma once

#include <algorithm>
#include <bit>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <numeric>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "redist/detail/hash.hpp"
#include "redist/plan/request.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist {

namespace detail {

// The holder that sends (id, key) to `targets` (ascending): the one sharing a node with the most targets,
// then the least loaded (destinations already assigned to it), then the lowest rank.
inline int pick_source(std::span<const int> holders, std::span<const int> targets,
                       const std::vector<std::uint64_t>& load, int ranks_per_node) {
  int best = -1;
  std::ptrdiff_t best_local = -1;
  for (int s : holders) {  // ascending, so strict comparisons keep the lowest rank on a tie
    // Targets ascend, so those on s's node are one run (std::ranges trips clang 14 with libstdc++ 12).
    const int node = s / ranks_per_node;
    const auto first = std::partition_point(targets.begin(), targets.end(),
                                            [&](int t) { return t / ranks_per_node < node; });
    const auto local =
        std::partition_point(first, targets.end(), [&](int t) { return t / ranks_per_node == node; }) - first;
    const auto u = static_cast<std::size_t>(s);
    if (local > best_local || (local == best_local && load[u] < load[static_cast<std::size_t>(best)])) {
      best = s;
      best_local = local;
    }
  }
  return best;
}

// Hashes a target set, to intern it: a tree of 100k sets would cost a cache miss per level on every lookup.
struct rank_set_hash {
  std::size_t operator()(const std::vector<int>& set) const noexcept {
    return static_cast<std::size_t>(fingerprint().add_all(set).value());
  }
};

// Places steps, in order, into the first stage where their root is no other step's root and their
// destinations are no other step's destinations. Per rank, one bit per stage says it is taken, so a step
// finds its stage by OR-ing a few words instead of looking at every stage, starting past the words in which
// one of its ranks is taken in every stage.
inline std::vector<std::vector<step>> first_fit_stages(std::vector<broadcast_step> steps, int ranks) {
  struct taken {
    std::vector<std::uint64_t> bits;
    std::size_t full = 0;  // bits[w] is all ones for every w < full
    std::uint64_t word(std::size_t w) const { return w < bits.size() ? bits[w] : 0; }
    void take(std::size_t stage) {
      if (bits.size() <= stage / 64) bits.resize(stage / 64 + 1, 0);
      bits[stage / 64] |= std::uint64_t{1} << (stage % 64);
      while (full < bits.size() && bits[full] == ~std::uint64_t{0}) ++full;
    }
  };
  std::vector<taken> as_root(static_cast<std::size_t>(ranks)), as_dst(static_cast<std::size_t>(ranks));
  std::vector<std::vector<step>> stages;
  for (auto& s : steps) {
    taken& root = as_root[static_cast<std::size_t>(s.root)];
    std::size_t w = root.full;
    for (int d : s.dsts) w = std::max(w, as_dst[static_cast<std::size_t>(d)].full);
    std::size_t stage = 0;
    for (;; ++w) {
      std::uint64_t busy = root.word(w);
      for (int d : s.dsts) busy |= as_dst[static_cast<std::size_t>(d)].word(w);
      if (~busy != 0) {
        stage = w * 64 + static_cast<std::size_t>(std::countr_zero(~busy));
        break;
      }
    }
    root.take(stage);
    for (int d : s.dsts) as_dst[static_cast<std::size_t>(d)].take(stage);
    if (stage == stages.size()) stages.emplace_back();
    stages[stage].push_back(std::move(s));
  }
  return stages;
}

}  // namespace detail

// wants[r]: the ids rank r must end up holding, for every key of `keys`; ranks past wants.size() want
// nothing. Transfers with the same source, key and receivers become one broadcast_step (a send/recv when it
// has one receiver); steps that differ only in their key are merged within a key group. Stages are filled
// first-fit in (root, dsts, ids, keys) order: at most one step per root, no receiver in two steps of a stage.
inline plan plan_broadcast(const storage_tracker& tracker, std::span<const id_list> wants,
                           std::span<const std::string> keys, const plan_options& options = {}) {
  const auto req = detail::resolve_request("redist::plan_broadcast", tracker, wants, keys, options);
  const int ranks = tracker.ranks();
  const auto ids = tracker.ids();

  // The ranks wanting each id position, ascending: a counting sort, linear in the size of the request.
  std::vector<std::size_t> begin(ids.size() + 1, 0);
  for (auto list : req.list_of)
    if (list != detail::resolved_request::none)
      for (auto i : req.lists[list]) ++begin[i + 1];
  std::partial_sum(begin.begin(), begin.end(), begin.begin());
  std::vector<int> wanter(begin.back());
  std::vector<std::size_t> fill(begin.begin(), begin.end() - 1);
  for (std::size_t r = 0; r < req.list_of.size(); ++r)
    if (req.list_of[r] != detail::resolved_request::none)
      for (auto i : req.lists[req.list_of[r]]) wanter[fill[i]++] = static_cast<int>(r);

  // One transfer per (id, key) that a wanter lacks, as plain numbers: grouping and ordering them is then a
  // sort of integers, not of maps of id lists (100k samples x 64 ranks may make 100k distinct target sets).
  struct transfer {
    int root;
    std::uint32_t set;  // interned target set
    std::uint32_t key;  // position in the request
    std::uint32_t id;   // position in tracker.ids()
  };
  std::unordered_map<std::vector<int>, std::uint32_t, detail::rank_set_hash> set_index;
  std::vector<const std::vector<int>*> sets;  // by interned number
  std::vector<transfer> moves;
  std::vector<std::uint64_t> load(static_cast<std::size_t>(ranks), 0);
  std::vector<int> targets;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::span<const int> want(wanter.data() + begin[i], begin[i + 1] - begin[i]);
    if (want.empty()) continue;
    for (std::size_t j = 0; j < req.keys.size(); ++j) {
      const auto holders = tracker.holders(i, req.keys[j]);
      targets.clear();
      std::set_difference(want.begin(), want.end(), holders.begin(), holders.end(),
                          std::back_inserter(targets));
      if (targets.empty()) continue;
      const int source = detail::pick_source(holders, targets, load, options.ranks_per_node);
      load[static_cast<std::size_t>(source)] += targets.size();
      const auto [set, fresh] = set_index.try_emplace(targets, static_cast<std::uint32_t>(sets.size()));
      if (fresh) sets.push_back(&set->first);
      moves.push_back({source, set->second, static_cast<std::uint32_t>(j), static_cast<std::uint32_t>(i)});
    }
  }
  // Renumber sets in content order, so comparing numbers compares sets.
  std::vector<std::uint32_t> by_content(sets.size()), set_order(sets.size());
  std::iota(by_content.begin(), by_content.end(), 0u);
  std::sort(by_content.begin(), by_content.end(), [&](auto a, auto b) { return *sets[a] < *sets[b]; });
  for (std::uint32_t n = 0; n < by_content.size(); ++n) set_order[by_content[n]] = n;
  for (auto& m : moves) m.set = set_order[m.set];
  std::sort(moves.begin(), moves.end(), [](const transfer& a, const transfer& b) {
    return std::tie(a.root, a.set, a.key, a.id) < std::tie(b.root, b.set, b.key, b.id);
  });

  // A group: the moves [first, last) with one (source, target set, key), ids ascending. Sorted by (root,
  // dsts, ids, key), groups that differ only in their key are adjacent and in request order; each such run
  // becomes one step per key group, in order of first key.
  using group = std::pair<std::size_t, std::size_t>;
  std::vector<group> groups;
  for (std::size_t n = 0; n < moves.size(); ++n) {
    const transfer& m = moves[n];
    if (n == 0 ||
        std::tie(m.root, m.set, m.key) != std::tie(moves[n - 1].root, moves[n - 1].set, moves[n - 1].key))
      groups.emplace_back(n, n);
    groups.back().second = n + 1;
  }
  auto compare_ids = [&](const group& a, const group& b) {
    return std::lexicographical_compare_three_way(
        moves.begin() + static_cast<std::ptrdiff_t>(a.first),
        moves.begin() + static_cast<std::ptrdiff_t>(a.second),
        moves.begin() + static_cast<std::ptrdiff_t>(b.first),
        moves.begin() + static_cast<std::ptrdiff_t>(b.second),
        [](const transfer& x, const transfer& y) { return x.id <=> y.id; });
  };
  std::sort(groups.begin(), groups.end(), [&](const group& a, const group& b) {
    const transfer& x = moves[a.first];
    const transfer& y = moves[b.first];
    if (x.root != y.root || x.set != y.set) return std::tie(x.root, x.set) < std::tie(y.root, y.set);
    const auto order = compare_ids(a, b);
    return order != 0 ? order < 0 : x.key < y.key;
  });
  std::vector<std::size_t> key_group(req.keys.size());
  for (std::size_t g = 0; g < req.groups.size(); ++g)
    for (std::size_t j : req.groups[g]) key_group[j] = g;
  std::vector<broadcast_step> steps;
  std::vector<std::size_t> step_group;
  for (std::size_t n = 0, run = 0; n < groups.size(); ++n) {
    const transfer& m = moves[groups[n].first];
    if (n == 0 || m.root != moves[groups[n - 1].first].root || m.set != moves[groups[n - 1].first].set ||
        compare_ids(groups[n], groups[n - 1]) != 0)
      run = steps.size();
    const auto g = key_group[m.key];
    const auto same = std::find(step_group.begin() + static_cast<std::ptrdiff_t>(run), step_group.end(), g);
    if (same != step_group.end()) {
      steps[static_cast<std::size_t>(same - step_group.begin())].keys.push_back(keys[m.key]);
      continue;
    }
    auto& s = steps.emplace_back(
        broadcast_step{.root = m.root, .dsts = *sets[by_content[m.set]], .ids = {}, .keys = {keys[m.key]}});
    for (std::size_t t = groups[n].first; t < groups[n].second; ++t) s.ids.push_back(ids[moves[t].id]);
    step_group.push_back(g);
  }
  return plan{.ranks = ranks, .stages = detail::first_fit_stages(std::move(steps), ranks)};
}

}  // namespace redist
