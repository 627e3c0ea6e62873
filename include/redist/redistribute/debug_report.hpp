// redistribute()'s REDIST_DEBUG report (detail/debug.hpp): the call and its plan's summary from
// estimate_cost, then per step this rank's time, bytes and bandwidth (and its peers, at TRACE).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/core/catalog.hpp"
#include "redist/detail/debug.hpp"
#include "redist/detail/text.hpp"
#include "redist/plan/cost.hpp"
#include "redist/plan/describe.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/plan/walker.hpp"

namespace redist::detail {

// The cost model reads a tracker, which the plan-based form does not have: this one is built from the plan
// and the catalog. A rank that sends a pair it did not receive in an earlier stage held it from the start
// (the first such sender owns it), so wire bytes are exact and hops are those of the plan's chains.
inline storage_tracker inferred_tracker(const plan& p, const catalog& cat) {
  storage_tracker::builder b(p.ranks);
  using held = std::tuple<int, sample_id, std::size_t>;  // rank, id, catalog key
  std::set<std::pair<sample_id, std::size_t>> owned;
  std::set<held> received, holding;
  std::vector<held> arriving;
  for (const auto& stage : p.stages) {
    arriving.clear();
    for (const auto& s : stage) {
      const auto& keys = keys_of(s);
      std::vector<std::size_t> codes;
      for (const auto& k : keys) {
        b.declare(k);
        const auto code = cat.find_key(k);
        if (!code) fail("the catalog has no key '", k, "'");
        codes.push_back(*code);
      }
      auto each = [&](const step_transfer& t) {
        for (std::uint32_t k = t.first_key; k < t.first_key + t.key_count; ++k)
          for (const sample_id id : *t.ids) {
            if (!received.contains({t.src, id, codes[k]}) && holding.insert({t.src, id, codes[k]}).second) {
              if (owned.insert({id, codes[k]}).second) {
                b.own(t.src, id, keys[k], cat.bytes(id, codes[k]));
              } else {
                b.hold(t.src, id, keys[k]);
              }
            }
            arriving.emplace_back(t.dst, id, codes[k]);
          }
      };
      for_each_transfer(s, each, [](const std::string& defect) { fail(defect); });
    }
    received.insert(arriving.begin(), arriving.end());
  }
  return std::move(b).build();
}

// One redistribute() call's report on one rank, made only when that rank prints (debug_prints): lines at
// the agreement (the call, the plan), after each step and at the end.
class redistribute_report {
 public:
  redistribute_report(int rank, int size) : rank_(rank), size_(size) {}

  void plan_agreed(const plan& p, const catalog& cat, const call_description& call) {
    std::string options;
    for (const auto& [field, value] : call_description::fields(call.text())) {
      if (field == "op" || field == "plan" || field == "catalog") continue;  // the name and fingerprints
      options += str(options.empty() ? "" : ", ", field, ' ', value);
    }
    print("redist::redistribute (", options, ')');
    try {
      const storage_tracker tracker = inferred_tracker(p, cat);
      cost_ = estimate_cost(p, tracker);
      const plan_cost& c = *cost_;
      const auto me = static_cast<std::size_t>(rank_);
      print("plan: ", c.steps.size(), c.steps.size() == 1 ? " step" : " steps", " in ", p.stages.size(),
            p.stages.size() == 1 ? " stage" : " stages", ", wire ", debug_bytes(c.wire_bytes),
            ", bottleneck rank ", c.bottleneck_rank, ' ', debug_bytes(c.bottleneck_bytes), ", hops ", c.hops,
            ", collective calls ", c.collective_calls, "; this rank sends ",
            debug_bytes(me < c.sent.size() ? c.sent[me] : 0), ", receives ",
            debug_bytes(me < c.received.size() ? c.received[me] : 0));
      if (debug_traces() && rank_ == 0) {
        std::istringstream table(describe(p, tracker));
        for (std::string line; std::getline(table, line);) print("  ", line);
      }
    } catch (const std::exception& e) {  // a report never changes what the call does
      print("plan: ", p.step_count(), " steps; no summary: ", e.what());
    }
  }

  void step_done(std::size_t n, const step& s, const catalog& cat, double seconds) {
    std::uint64_t sent = 0, received = 0;
    std::string stage;
    if (cost_ && n < cost_->steps.size()) {
      const step_cost& c = cost_->steps[n];
      sent = c.sent_by(rank_);
      received = c.received_by(rank_);
      stage = str(" (stage ", c.stage, ')');
    }
    sent_ += sent;
    received_ += received;
    std::string keys;
    for (const auto& k : keys_of(s)) keys += str(keys.empty() ? "" : ",", k);
    print("step ", n, stage, ' ', step_kind(s), " [", keys, "]: ", debug_ms(seconds), ", sent ",
          debug_bytes(sent), ", received ", debug_bytes(received), ", ", debug_rate(sent + received, seconds),
          debug_traces() ? peers(s, cat) : std::string());
  }

  void finished() {
    print("redist::redistribute done: ", debug_ms(timer_.seconds()), ", sent ", debug_bytes(sent_),
          ", received ", debug_bytes(received_), ", ", debug_rate(sent_ + received_, timer_.seconds()));
  }

 private:
  template <class... Parts>
  void print(const Parts&... parts) const {
    debug_print(rank_, size_, parts...);
  }

  // "; to 1 (96 B), 3 (12 B); from 1 (96 B)": this rank's transfers in step s, by peer.
  std::string peers(const step& s, const catalog& cat) const {
    std::map<int, std::uint64_t> to, from;
    try {
      const auto& keys = keys_of(s);
      auto each = [&](const step_transfer& t) {
        if (t.src == t.dst || (t.src != rank_ && t.dst != rank_)) return;
        std::uint64_t bytes = 0;
        for (std::uint32_t k = t.first_key; k < t.first_key + t.key_count; ++k) {
          const auto code = cat.find_key(keys[k]);
          for (const sample_id id : *t.ids) bytes += code ? cat.bytes(id, *code) : 0;
        }
        (t.src == rank_ ? to[t.dst] : from[t.src]) += bytes;
      };
      for_each_transfer(s, each, [](const std::string&) {});
    } catch (const std::exception& e) {
      return str("; peers unknown: ", e.what());
    }
    auto list = [](const char* what, const std::map<int, std::uint64_t>& m) {
      std::string out = str("; ", what, m.empty() ? " none" : "");
      bool first = true;
      for (const auto& [peer, bytes] : m) {
        out += str(first ? " " : ", ", peer, " (", bytes, " B)");
        first = false;
      }
      return out;
    };
    return list("to", to) + list("from", from);
  }

  int rank_, size_;
  debug_op_timer timer_;
  std::optional<plan_cost> cost_;
  std::uint64_t sent_ = 0, received_ = 0;
};

}  // namespace redist::detail
