// redist::detail::hop_counter: the longest chain of transfers behind any delivery of a plan.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/plan/walker.hpp"

namespace redist::detail {

// The longest chain of transfers behind any delivery. Initial holdings have depth 0; a delivery gets its
// source's depth + 1; steps of one stage read depths as they were when the stage started.
//
// Depths are kept only where they can matter: for (rank, id, key) that the rank sends in a later stage, and
// whose key some earlier stage delivered. In a one-stage plan nothing is kept and the walk is linear in
// the number of routes, not in the number of delivered samples.
class hop_counter {
 public:
  explicit hop_counter(plan_walker& w) : w_(w), t_(w.tracker()) {}

  int run(const plan& p) {
    const std::size_t nkeys = t_.keys().size();
    entries_ = static_cast<std::uint64_t>(t_.ids().size()) * nkeys;
    // 1. The first stage that delivers each key anywhere.
    std::vector<std::size_t> first(nkeys, npos);
    units([&](std::size_t stage, int, std::span<const int>, auto&&, std::span<const std::size_t> keys, bool) {
      for (std::size_t k : keys) first[k] = std::min(first[k], stage);
    });
    // 2. The (rank, entry) pairs whose depth may exceed 0 when they are sent.
    const auto ranks = static_cast<std::size_t>(p.ranks);
    last_send_.assign(ranks, npos);
    std::vector<std::size_t> ids;
    units([&](std::size_t stage, int src, std::span<const int>, auto&& resolve,
              std::span<const std::size_t> keys, bool repeat) {
      if (repeat) return;
      bool any = false;
      for (std::size_t k : keys) any = any || first[k] < stage;
      if (!any) return;
      resolve(ids);
      for (std::size_t k : keys)
        if (first[k] < stage)
          for (std::size_t i : ids) codes_.push_back(code(src, i * nkeys + k));
      auto& last = last_send_[static_cast<std::size_t>(src)];
      last = last == npos ? stage : std::max(last, stage);
    });
    std::sort(codes_.begin(), codes_.end());
    codes_.erase(std::unique(codes_.begin(), codes_.end()), codes_.end());
    depth_.resize(codes_.size());
    for (std::size_t n = 0; n < codes_.size(); ++n) {
      const std::uint64_t e = codes_[n] % entries_;
      const int r = static_cast<int>(codes_[n] / entries_);
      depth_[n] =
          t_.holds(r, static_cast<std::size_t>(e / nkeys), static_cast<std::size_t>(e % nkeys)) ? 0 : unset;
    }
    // 3. Deliveries, stage by stage.
    int hops = 0;
    std::size_t current = 0;
    std::vector<std::pair<std::size_t, std::uint32_t>> arriving;
    auto settle = [&] {
      for (const auto& [n, d] : arriving) depth_[n] = std::min(depth_[n], d);
      arriving.clear();
    };
    units([&](std::size_t stage, int src, std::span<const int> dsts, auto&& resolve,
              std::span<const std::size_t> keys, bool repeat) {
      if (stage != current) {
        settle();
        current = stage;
      }
      const bool deep = last_send_[static_cast<std::size_t>(src)] != npos && stage > 0;
      bool record = false;
      for (int d : dsts) record = record || later(d, stage);
      if (!deep && !record) {  // every depth here is 1
        hops = std::max(hops, 1);
        return;
      }
      if (repeat && !record) return;  // the same depths as the previous group's
      resolve(ids);
      for (std::size_t k : keys)
        for (std::size_t i : ids) {
          const std::uint64_t e = i * nkeys + k;
          std::uint32_t d = 0;
          if (deep) {
            const auto n = find(code(src, e));
            if (n != npos && depth_[n] != unset) d = depth_[n];
          }
          hops = std::max(hops, static_cast<int>(d) + 1);
          if (record)
            for (int dst : dsts)
              if (later(dst, stage))
                if (const auto n = find(code(dst, e)); n != npos) arriving.emplace_back(n, d + 1);
        }
    });
    return hops;
  }

 private:
  static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();
  static constexpr std::uint32_t unset = std::numeric_limits<std::uint32_t>::max();

  // Plans name far fewer than 2^64 / (ranks x ids x keys) things, so the product does not overflow.
  std::uint64_t code(int rank, std::uint64_t entry) const noexcept {
    return static_cast<std::uint64_t>(rank) * entries_ + entry;
  }
  std::size_t find(std::uint64_t c) const noexcept {
    const auto it = std::lower_bound(codes_.begin(), codes_.end(), c);
    return it != codes_.end() && *it == c ? static_cast<std::size_t>(it - codes_.begin()) : npos;
  }
  // Whether `rank` sends something in a stage after `stage`, so what it receives now must be remembered.
  bool later(int rank, std::size_t stage) const noexcept {
    const auto last = last_send_[static_cast<std::size_t>(rank)];
    return last != npos && last > stage;
  }

  // f(stage, src, dsts, resolve, keys, repeat) for every group of transfers that send the same ids and keys
  // from one source; self-transfers are left out, and groups left with no destination or no id are skipped.
  // resolve(out) fills `out` with the group's tracker id positions, on demand: most groups never need them.
  // `repeat`: the previous group of this stage sent the same ids and keys from the same source (the replicas
  // of a scatter), so what depends only on those is known already.
  template <class F>
  void units(F&& f) {
    std::vector<int> dsts, reached;
    std::vector<std::size_t> keys, last_keys;
    std::vector<step_transfer> transfers, grouped;
    std::vector<std::size_t> begin;
    const id_list* last_ids = nullptr;
    int last_src = -1;
    std::size_t last_stage = npos;
    w_.each_step([&](std::size_t stage, std::size_t, const step& s) {
      auto emit = [&](int src, const id_list& ids, std::span<const int> to, std::span<const std::size_t> k) {
        dsts.clear();
        for (int d : to)
          if (d != src) dsts.push_back(d);
        if (dsts.empty() || ids.empty() || k.empty()) return;
        auto resolve = [&](std::vector<std::size_t>& out) {
          out.clear();
          for (sample_id x : ids) out.push_back(w_.id(x));
        };
        const bool repeat = stage == last_stage && src == last_src &&
                            std::equal(k.begin(), k.end(), last_keys.begin(), last_keys.end()) &&
                            (last_ids == &ids || *last_ids == ids);
        f(stage, src, std::span<const int>(dsts), resolve, k, repeat);
        last_stage = stage;
        last_src = src;
        last_ids = &ids;
        last_keys.assign(k.begin(), k.end());
      };
      // The step's transfers grouped by list (a counting sort, stable), one group per list with every
      // destination it reaches.
      keys = w_.keys(keys_of(s));
      transfers.clear();
      w_.transfers(s, [&](const step_transfer& t) { transfers.push_back(t); });
      begin.assign(1, 0);
      for (const auto& t : transfers) {
        if (t.list + 2 > begin.size()) begin.resize(t.list + 2, 0);
        ++begin[t.list + 1];
      }
      for (std::size_t n = 1; n < begin.size(); ++n) begin[n] += begin[n - 1];
      grouped.resize(transfers.size());
      for (const auto& t : transfers) grouped[begin[t.list]++] = t;
      for (std::size_t g = 0; g < grouped.size();) {
        const auto& t = grouped[g];
        reached.clear();
        for (; g < grouped.size() && grouped[g].list == t.list; ++g) reached.push_back(grouped[g].dst);
        emit(t.src, *t.ids, reached, std::span<const std::size_t>(keys.data() + t.first_key, t.key_count));
      }
    });
  }

  plan_walker& w_;
  const storage_tracker& t_;
  std::uint64_t entries_ = 0;
  std::vector<std::size_t> last_send_;  // per rank: the last stage it sends a kept pair in, or npos
  std::vector<std::uint64_t> codes_;    // kept (rank, entry) pairs, ascending
  std::vector<std::uint32_t> depth_;    // per kept pair; unset until delivered (or held from the start)
};

}  // namespace redist::detail
