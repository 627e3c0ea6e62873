// redist::describe: a plan as a readable table, one line per step (stage, kind, ranks, keys, ids, wire bytes,
// the step's busiest rank), then the totals of estimate_cost.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <variant>

#include "redist/detail/text.hpp"
#include "redist/plan/cost.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist {

// A table: one line per step (stage, kind, ranks, keys, ids, wire bytes, the step's busiest rank), then the
// totals. A plan of more than 64 steps is summarized: the first steps, then one line per kind of step.
inline std::string describe(const plan& p, const storage_tracker& tracker) {
  const plan_cost cost = estimate_cost(p, tracker);
  auto ids_of = [](const step& s) {
    return std::visit(
        [](const auto& x) -> std::size_t {
          using T = std::decay_t<decltype(x)>;
          std::size_t n = 0;
          if constexpr (std::is_same_v<T, broadcast_step>) {
            n = x.ids.size();
          } else if constexpr (std::is_same_v<T, all_to_all_step>) {
            for (const auto& pl : x.payloads) n += pl.ids.size();
          } else {
            for (const auto& l : x.ids) n += l.size();
          }
          return n;
        },
        s);
  };
  auto key_text = [](const step& s) {
    std::string out;
    for (const auto& k : keys_of(s)) out += (out.empty() ? "" : ",") + k;
    if (out.size() > 24) out = out.substr(0, 21) + "...";
    return out;
  };
  auto cell = [](std::string s, std::size_t width) {
    if (s.size() < width) s.insert(0, width - s.size(), ' ');
    return s;
  };
  auto left = [](std::string s, std::size_t width) {
    if (s.size() < width) s.append(width - s.size(), ' ');
    return s;
  };

  std::ostringstream os;
  auto plural = [](std::size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  os << "plan over " << plural(static_cast<std::size_t>(p.ranks), "rank") << ": "
     << plural(cost.steps.size(), "step") << " in " << plural(p.stages.size(), "stage") << "\n";
  constexpr std::size_t limit = 64, shown = 16;
  const bool summarize = cost.steps.size() > limit;
  if (!cost.steps.empty()) {
    os << cell("stage", 6) << "  " << left("kind", 10) << cell("ranks", 7) << "  " << left("keys", 24)
       << cell("ids", 9) << cell("wire", 13) << cell("max rank", 13) << "  (rank)\n";
    std::size_t n = 0;
    for (const auto& stage : p.stages)
      for (const auto& s : stage) {
        const step_cost& c = cost.steps[n++];
        if (summarize && n > shown) continue;
        os << cell(std::to_string(c.stage), 6) << "  " << left(c.kind, 10)
           << cell(std::to_string(c.ranks.size()), 7) << "  " << left(key_text(s), 24)
           << cell(std::to_string(ids_of(s)), 9) << cell(detail::human_bytes(c.wire_bytes), 13)
           << cell(detail::human_bytes(c.bottleneck_bytes), 13) << "  (" << c.bottleneck_rank << ")\n";
      }
  }
  if (summarize) {
    os << "  ... " << cost.steps.size() - shown << " more steps; by kind:\n";
    for (const char* kind : {"broadcast", "gather", "scatter", "all_to_all"}) {
      std::size_t count = 0;
      std::uint64_t wire = 0, heaviest = 0;
      for (const auto& c : cost.steps)
        if (c.kind == kind) {
          ++count;
          wire += c.wire_bytes;
          heaviest = std::max(heaviest, c.wire_bytes);
        }
      if (count > 0)
        os << "  " << left(kind, 10) << " " << count << " steps, wire " << detail::human_bytes(wire)
           << ", heaviest step " << detail::human_bytes(heaviest) << "\n";
    }
  }
  auto exact = [](std::uint64_t b) {
    return detail::human_bytes(b) + (b < 1024 ? std::string() : " (" + std::to_string(b) + " B)");
  };
  os << "totals: wire " << exact(cost.wire_bytes) << ", bottleneck rank " << cost.bottleneck_rank << " "
     << exact(cost.bottleneck_bytes) << ", hops " << cost.hops << ", collective calls "
     << cost.collective_calls << "\n";
  return os.str();
}

}  // namespace redist
