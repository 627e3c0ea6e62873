// redist::check_plan: runs a plan on a copy of the tracker's holdings, step by step, and reports whether
// every rank ends with every (id, key) it wants, what was delivered needlessly, and any step whose source
// lacked data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist {

struct plan_check {
  std::vector<std::string> problems;  // the first few, readable; empty when the plan is correct
  std::size_t problem_count = 0;      // all of them
  std::size_t missing = 0;            // wanted (rank, id, key) not held at the end
  std::size_t redundant = 0;          // deliveries to a rank that already held the data
  std::size_t unwanted = 0;           // deliveries to a rank that does not want the data (relays)
  std::size_t deliveries = 0;
  bool ok() const noexcept { return problem_count == 0; }
};

namespace detail {

class plan_simulator {
 public:
  plan_simulator(const storage_tracker& t, std::span<const id_list> wants, std::span<const std::string> keys)
      : t_(t), held_(static_cast<std::size_t>(t.ranks())), wanted_(static_cast<std::size_t>(t.ranks())) {
    for (int r = 0; r < t.ranks(); ++r)
      for (const auto& [i, k] : t.held_by(r)) held_[static_cast<std::size_t>(r)].insert(code(i, k));
    if (wants.size() > wanted_.size())
      problem("wants names ", wants.size(), " ranks, the tracker has ", t.ranks());
    for (std::size_t r = 0; r < wants.size() && r < wanted_.size(); ++r)
      for (sample_id id : wants[r])
        for (const auto& key : keys) {
          const auto i = t.find_id(id);
          const auto k = t.find_key(key);
          if (i && k)
            wanted_[r].insert(code(*i, *k));
          else
            problem("rank ", r, " wants id ", id, ", key '", key, "', which the tracker does not know");
        }
  }

  plan_check run(const plan& p) {
    if (p.ranks != t_.ranks()) problem("the plan is for ", p.ranks, " ranks, the tracker has ", t_.ranks());
    for (std::size_t s = 0; s < p.stages.size(); ++s) {
      // Steps of a stage run at once: sources must hold their data before the stage starts.
      std::vector<std::pair<int, std::uint64_t>> arriving;
      for (std::size_t n = 0; n < p.stages[s].size(); ++n) {
        where_ = "stage " + std::to_string(s) + " step " + std::to_string(n);
        const step& st = p.stages[s][n];
        for_each_transfer(
            st,
            [&](const step_transfer& t) {
              send(t.src, t.dst, *t.ids, std::span(keys_of(st)).subspan(t.first_key, t.key_count), arriving);
            },
            [&](const std::string& defect) { problem(where_, ": ", defect); });
      }
      for (const auto& [r, c] : arriving) deliver(r, c);
    }
    for (std::size_t r = 0; r < wanted_.size(); ++r)
      for (auto c : wanted_[r])
        if (!held_[r].count(c)) {
          ++report_.missing;
          problem("rank ", r, " lacks id ", t_.ids()[c / nkeys()], ", key '", t_.keys()[c % nkeys()],
                  "' at the end");
        }
    return report_;
  }

 private:
  std::size_t nkeys() const noexcept { return t_.keys().size(); }
  std::uint64_t code(std::size_t i, std::size_t k) const noexcept { return i * nkeys() + k; }

  template <class... Parts>
  void problem(const Parts&... parts) {
    if (++report_.problem_count > 20) return;
    std::ostringstream os;
    (os << ... << parts);
    report_.problems.push_back(os.str());
  }

  bool rank_ok(int r) {
    if (r >= 0 && r < t_.ranks()) return true;
    problem(where_, ": rank ", r, " is out of range");
    return false;
  }

  // Queues delivery of ids x keys from src to dst, checking that src holds them now.
  void send(int src, int dst, const id_list& ids, std::span<const std::string> keys,
            std::vector<std::pair<int, std::uint64_t>>& arriving) {
    if (!rank_ok(src) || !rank_ok(dst)) return;
    for (const auto& key : keys) {
      const auto k = t_.find_key(key);
      if (!k) {
        problem(where_, ": unknown key '", key, "'");
        continue;
      }
      for (sample_id id : ids) {
        const auto i = t_.find_id(id);
        if (!i || !held_[static_cast<std::size_t>(src)].count(code(*i, *k))) {
          problem(where_, ": rank ", src, " sends id ", id, ", key '", key, "', which it does not hold");
          continue;
        }
        if (src != dst) arriving.emplace_back(dst, code(*i, *k));
      }
    }
  }

  void deliver(int r, std::uint64_t c) {
    ++report_.deliveries;
    const auto rr = static_cast<std::size_t>(r);
    if (!held_[rr].insert(c).second) ++report_.redundant;
    if (!wanted_[rr].count(c)) ++report_.unwanted;
  }

  const storage_tracker& t_;
  std::vector<std::unordered_set<std::uint64_t>> held_, wanted_;
  std::string where_;
  plan_check report_;
};

}  // namespace detail

// Runs `p` against the tracker's holdings. wants[r] and keys as given to the planner.
inline plan_check check_plan(const plan& p, const storage_tracker& tracker, std::span<const id_list> wants,
                             std::span<const std::string> keys) {
  return detail::plan_simulator(tracker, wants, keys).run(p);
}

}  // namespace redist
