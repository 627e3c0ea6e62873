// redist::detail::plan_walker: a plan's steps in order, their ranks, keys and ids resolved against a tracker,
// and each step's flows (bytes from one rank to another), for the cost model and the hop count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist::detail {

// Bytes from one rank to another in one step.
struct flow {
  int src;
  int dst;
  std::uint64_t bytes;
};

inline const char* step_kind(const step& s) noexcept {
  constexpr const char* names[] = {"broadcast", "gather", "scatter", "all_to_all"};
  return names[s.index()];
}

// Resolves ids to tracker positions. Plans list ids mostly in ascending runs, so the position after the last
// one found is tried before a binary search: walking a sorted list costs a comparison per id.
class id_finder {
 public:
  explicit id_finder(std::span<const sample_id> ids) : ids_(ids) {}
  std::optional<std::size_t> operator()(sample_id id) noexcept {
    if (next_ < ids_.size() && ids_[next_] == id) return next_++;
    const auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
    if (it == ids_.end() || *it != id) return std::nullopt;
    next_ = static_cast<std::size_t>(it - ids_.begin()) + 1;
    return next_ - 1;
  }

 private:
  std::span<const sample_id> ids_;
  std::size_t next_ = 0;
};

// Walks a plan step by step with tracker positions resolved, failing on anything the plan names that the
// tracker does not know: a cost of a malformed plan would be a made-up number.
class plan_walker {
 public:
  plan_walker(const char* who, const plan& p, const storage_tracker& t)
      : who_(who), p_(p), t_(t), find_(t.ids()) {
    if (p.ranks != t.ranks()) fail(who, ": the plan is for ", p.ranks, " ranks, the tracker has ", t.ranks());
  }

  const storage_tracker& tracker() const noexcept { return t_; }

  // f(stage, index in stage, step) for every step in plan order; errors meanwhile name that step.
  template <class F>
  void each_step(F&& f) {
    for (stage_ = 0; stage_ < p_.stages.size(); ++stage_)
      for (index_ = 0; index_ < p_.stages[stage_].size(); ++index_)
        f(stage_, index_, p_.stages[stage_][index_]);
  }

  int rank(int r) const {
    if (r < 0 || r >= p_.ranks)
      fail(who_, ": stage ", stage_, ", step ", index_, ": rank ", r, " is out of range");
    return r;
  }
  std::size_t key(const std::string& k) const {
    const auto pos = t_.find_key(k);
    if (!pos) fail(who_, ": stage ", stage_, ", step ", index_, ": unknown key '", k, "'");
    return *pos;
  }
  std::vector<std::size_t> keys(std::span<const std::string> names) const {
    std::vector<std::size_t> out;
    out.reserve(names.size());
    for (const auto& k : names) out.push_back(key(k));
    return out;
  }
  std::size_t id(sample_id i) {
    const auto pos = find_(i);
    if (!pos) fail(who_, ": stage ", stage_, ", step ", index_, ": unknown id ", i);
    return *pos;
  }
  void check_has(std::size_t i, std::size_t k) const {
    if (!t_.has(i, k))
      fail(who_, ": stage ", stage_, ", step ", index_, ": id ", t_.ids()[i], " has no key '", t_.keys()[k],
           "'");
  }

  // Bytes of `ids` for every key of `keys` (tracker positions).
  std::uint64_t bytes(const id_list& ids, std::span<const std::size_t> keys) {
    std::uint64_t sum = 0;
    for (sample_id x : ids) {
      const std::size_t i = id(x);
      for (std::size_t k : keys) {
        check_has(i, k);
        sum += t_.bytes(i, k);
      }
    }
    return sum;
  }

  // The ranks `s` names (unsorted, possibly repeated) and its flows, from a rank to itself included.
  void expand(const step& s, std::vector<int>& ranks, std::vector<flow>& out) {
    ranks.clear();
    out.clear();
    const auto k = keys(keys_of(s));
    std::visit(
        [&](const auto& x) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(x)>, all_to_all_step>)
            ranks.push_back(rank(x.root));
        },
        s);
    std::vector<std::optional<std::uint64_t>> list_bytes;  // transfers of one list send the same bytes
    const id_list* last = nullptr;
    transfers(s, [&](const step_transfer& t) {
      ranks.push_back(rank(t.src));
      ranks.push_back(rank(t.dst));
      if (t.list >= list_bytes.size()) list_bytes.resize(t.list + 1);
      auto& b = list_bytes[t.list];
      // The replicas of a scatter want equal lists next to each other: comparing is cheaper than summing.
      if (!b && last != nullptr && t.key_count == k.size() && *last == *t.ids) b = out.back().bytes;
      if (!b) b = bytes(*t.ids, std::span<const std::size_t>(k.data() + t.first_key, t.key_count));
      out.push_back({t.src, t.dst, *b});
      last = t.key_count == k.size() ? t.ids : nullptr;
    });
  }

  // for_each_transfer over `s`, a malformed step an error naming it.
  template <class F>
  void transfers(const step& s, F&& f) const {
    for_each_transfer(s, f, [&](const std::string& defect) {
      fail(who_, ": stage ", stage_, ", step ", index_, ": ", defect);
    });
  }

 private:
  const char* who_;
  const plan& p_;
  const storage_tracker& t_;
  id_finder find_;
  std::size_t stage_ = 0, index_ = 0;
};

}  // namespace redist::detail
