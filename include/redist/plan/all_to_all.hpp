// redist::plan_all_to_all: the one-hop plan. Every (id, key) a rank wants and lacks crosses the wire once,
// straight from a holder to it, in one all-to-all step per key group.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
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

// Payloads deduplicated by (source, key, ids): replicas that want the same samples share one staged buffer.
class payload_table {
 public:
  std::uint32_t intern(all_to_all_step& a2a, int src, std::uint32_t key,
                       std::span<const std::uint32_t> positions, std::span<const std::uint32_t> list,
                       const storage_tracker& tracker) {
    fingerprint f;
    f.add(static_cast<std::uint64_t>(static_cast<std::uint32_t>(src)) << 32 | key);
    for (auto p : positions) f.add(list[p]);
    const std::uint64_t h = f.value();
    for (auto [it, end] = index_.equal_range(h); it != end; ++it) {
      const auto& c = a2a.payloads[it->second];
      if (c.src == src && c.key == key && c.ids.size() == positions.size() &&
          std::equal(positions.begin(), positions.end(), c.ids.begin(),
                     [&](std::uint32_t p, sample_id id) { return tracker.ids()[list[p]] == id; }))
        return it->second;
    }
    const auto index = static_cast<std::uint32_t>(a2a.payloads.size());
    auto& p = a2a.payloads.emplace_back();
    p.src = src;
    p.key = key;
    p.ids.reserve(positions.size());
    for (auto q : positions) p.ids.push_back(tracker.ids()[list[q]]);
    index_.emplace(h, index);
    return index;
  }

 private:
  std::unordered_multimap<std::uint64_t, std::uint32_t> index_;
};

}  // namespace detail

// wants[r]: the ids rank r must end up holding, for every key of `keys`, in the order it wants them.
// The source of each (id, key) a rank lacks is: a holder on the same node (ranks_per_node), else any holder;
// among those, the one with the fewest bytes assigned so far; then the lowest rank. Ranks on one node that
// want the same list share the source, so the source packs the payload once for all of them.
inline plan plan_all_to_all(const storage_tracker& tracker, std::span<const id_list> wants,
                            std::span<const std::string> keys, const plan_options& options = {}) {
  const auto req = detail::resolve_request("redist::plan_all_to_all", tracker, wants, keys, options);
  const int rpn = options.ranks_per_node;
  plan out{tracker.ranks(), {}};

  // Consumers of each distinct list, split by node: (list, node) -> ascending members.
  std::vector<std::vector<std::vector<int>>> subgroups(req.lists.size());
  for (int r = 0; r < tracker.ranks(); ++r) {
    const auto l = req.list_of[static_cast<std::size_t>(r)];
    if (l == detail::resolved_request::none) continue;
    auto& groups = subgroups[l];
    if (groups.empty() || groups.back().front() / rpn != r / rpn) groups.emplace_back();
    groups.back().push_back(r);
  }

  std::vector<std::uint64_t> load(static_cast<std::size_t>(tracker.ranks()), 0);
  auto choose = [&](std::span<const int> holders, int node) {
    int best = -1;
    bool best_local = false;
    for (int h : holders) {
      const bool local = h / rpn == node;
      const auto hl = load[static_cast<std::size_t>(h)];
      if (best < 0 || local > best_local ||
          (local == best_local &&
           hl < load[static_cast<std::size_t>(best)])) {  // holders ascend: ties keep lowest
        best = h;
        best_local = local;
      }
    }
    return best;
  };

  for (const auto& group : req.groups) {
    all_to_all_step a2a;
    for (auto j : group) a2a.keys.push_back(tracker.keys()[req.keys[j]]);
    detail::payload_table payloads;
    // Positions into the list, per source: `shared` when every member needs the id, else per member.
    std::vector<std::pair<int, std::vector<std::uint32_t>>> shared;
    std::vector<std::vector<std::pair<int, std::vector<std::uint32_t>>>> own;
    auto slot = [](std::vector<std::pair<int, std::vector<std::uint32_t>>>& v,
                   int src) -> std::vector<std::uint32_t>& {
      for (auto& [s, list] : v)
        if (s == src) return list;
      return v.emplace_back(src, std::vector<std::uint32_t>{}).second;
    };
    auto find_slot = [](const std::vector<std::pair<int, std::vector<std::uint32_t>>>& v,
                        int src) -> const std::vector<std::uint32_t>* {
      for (const auto& [s, list] : v)
        if (s == src) return &list;
      return nullptr;
    };
    std::vector<int> needy;
    std::vector<std::uint32_t> merged;
    for (std::size_t l = 0; l < req.lists.size(); ++l) {
      const auto& list = req.lists[l];
      for (const auto& members : subgroups[l]) {
        const int node = members.front() / rpn;
        for (std::uint32_t kj = 0; kj < group.size(); ++kj) {
          const std::size_t key = req.keys[group[kj]];
          shared.clear();
          own.assign(members.size(), {});
          for (std::uint32_t p = 0; p < list.size(); ++p) {
            const std::size_t id = list[p];
            needy.clear();
            for (std::size_t m = 0; m < members.size(); ++m)
              if (!tracker.holds(members[m], id, key)) needy.push_back(static_cast<int>(m));
            if (needy.empty()) continue;
            const int src = choose(tracker.holders(id, key), node);
            load[static_cast<std::size_t>(src)] += tracker.bytes(id, key) * needy.size();
            if (needy.size() == members.size()) {
              slot(shared, src).push_back(p);
            } else {
              for (int m : needy) slot(own[static_cast<std::size_t>(m)], src).push_back(p);
            }
          }
          // Each member receives, from each source, the shared positions merged with its own, in list order.
          // Members with nothing of their own from a source share the payload of the shared positions.
          std::vector<std::pair<int, std::uint32_t>> shared_payload;
          for (std::size_t m = 0; m < members.size(); ++m) {
            std::vector<int> srcs;
            for (const auto& [s, _] : shared) srcs.push_back(s);
            for (const auto& [s, _] : own[m]) srcs.push_back(s);
            std::sort(srcs.begin(), srcs.end());
            srcs.erase(std::unique(srcs.begin(), srcs.end()), srcs.end());
            for (int src : srcs) {
              const auto* a = find_slot(shared, src);
              const auto* b = find_slot(own[m], src);
              std::uint32_t payload = 0;
              if (!b) {
                auto cached = std::find_if(shared_payload.begin(), shared_payload.end(),
                                           [&](const auto& c) { return c.first == src; });
                if (cached == shared_payload.end())
                  cached =
                      shared_payload.insert(cached, {src, payloads.intern(a2a, src, kj, *a, list, tracker)});
                payload = cached->second;
              } else {
                merged.clear();
                if (a) std::merge(a->begin(), a->end(), b->begin(), b->end(), std::back_inserter(merged));
                payload = payloads.intern(a2a, src, kj, a ? std::span<const std::uint32_t>(merged) : *b, list,
                                          tracker);
              }
              a2a.routes.push_back({src, members[m], payload});
            }
          }
        }
      }
    }
    if (a2a.routes.empty()) continue;
    std::sort(a2a.routes.begin(), a2a.routes.end(), [&](const auto& x, const auto& y) {
      return std::tuple(x.src, x.dst, a2a.payloads[x.payload].key) <
             std::tuple(y.src, y.dst, a2a.payloads[y.payload].key);
    });
    out.stages.push_back({std::move(a2a)});
  }
  return out;
}

}  // namespace redist
