// redist::estimate_cost, traffic_matrix: what a plan puts on the wire (bytes each rank sends and receives per
// step, totals, the bottleneck rank, hops, collective calls); redist::describe (plan/describe.hpp) prints it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/plan/hops.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/plan/walker.hpp"

namespace redist {

// The cost of one step. A broadcast plan over 65,536 ranks has thousands of steps, each naming a few ranks,
// so per-rank figures are kept for the ranks the step names only: a dense vector per step would take
// steps x ranks memory.
struct step_cost {
  std::string kind;  // "broadcast", "gather", "scatter" or "all_to_all"
  std::size_t stage = 0;
  std::vector<int> ranks;                     // every rank the step names, ascending
  std::vector<std::uint64_t> sent, received;  // bytes, per entry of `ranks`
  std::uint64_t wire_bytes = 0;
  std::size_t collective_calls = 1;
  // The rank with the most bytes sent + received in this step, lowest on a tie; -1 if none moves any.
  int bottleneck_rank = -1;
  std::uint64_t bottleneck_bytes = 0;

  // Bytes `rank` sends / receives in this step (0 when the step does not name it).
  std::uint64_t sent_by(int rank) const noexcept { return at(sent, rank); }
  std::uint64_t received_by(int rank) const noexcept { return at(received, rank); }

 private:
  std::uint64_t at(const std::vector<std::uint64_t>& v, int rank) const noexcept {
    const auto it = std::lower_bound(ranks.begin(), ranks.end(), rank);
    return it != ranks.end() && *it == rank ? v[static_cast<std::size_t>(it - ranks.begin())] : 0;
  }
};

struct plan_cost {
  std::vector<step_cost> steps;  // in plan order
  std::uint64_t wire_bytes = 0;
  std::vector<std::uint64_t> sent, received;  // per rank of the plan, summed over steps
  int bottleneck_rank = -1;                   // max over ranks of sent + received, lowest rank on a tie
  std::uint64_t bottleneck_bytes = 0;
  int hops = 0;  // the longest chain of transfers any delivered (rank, id, key) went through
  std::size_t collective_calls = 0;
};

// Bytes that cross the wire from src to dst over the whole plan.
struct traffic_entry {
  int src = 0;
  int dst = 0;
  std::uint64_t bytes = 0;
  friend bool operator==(const traffic_entry&, const traffic_entry&) = default;
};

// Bytes of (id, key) are tracker.bytes(). A transfer from a rank to itself costs nothing and is not on the
// wire. The model is flat: a broadcast costs root -> each destination (as if sent point to point, whatever
// tree the library underneath uses); a gather each source -> root; a scatter root -> each destination; an
// all-to-all, per route, its payload's bytes. One collective call per step. Throws redist::error when the
// plan names a rank, id or key the tracker does not know.
inline plan_cost estimate_cost(const plan& p, const storage_tracker& tracker) {
  detail::plan_walker walker("redist::estimate_cost", p, tracker);
  plan_cost cost;
  const auto ranks = static_cast<std::size_t>(p.ranks);
  cost.sent.assign(ranks, 0);
  cost.received.assign(ranks, 0);
  // Per-step sums go through dense scratch arrays; only the ranks a step names are touched and reset.
  std::vector<std::uint64_t> sent(ranks, 0), received(ranks, 0);
  std::vector<int> named;
  std::vector<detail::flow> flows;
  walker.each_step([&](std::size_t stage, std::size_t, const step& s) {
    walker.expand(s, named, flows);
    step_cost sc;
    sc.kind = detail::step_kind(s);
    sc.stage = stage;
    for (const auto& t : flows) {
      if (t.src == t.dst) continue;
      sent[static_cast<std::size_t>(t.src)] += t.bytes;
      received[static_cast<std::size_t>(t.dst)] += t.bytes;
      sc.wire_bytes += t.bytes;
    }
    std::sort(named.begin(), named.end());
    named.erase(std::unique(named.begin(), named.end()), named.end());
    sc.ranks = named;
    sc.sent.reserve(named.size());
    sc.received.reserve(named.size());
    for (int r : named) {
      const auto u = static_cast<std::size_t>(r);
      sc.sent.push_back(sent[u]);
      sc.received.push_back(received[u]);
      if (sent[u] + received[u] > sc.bottleneck_bytes) {
        sc.bottleneck_bytes = sent[u] + received[u];
        sc.bottleneck_rank = r;
      }
      cost.sent[u] += sent[u];
      cost.received[u] += received[u];
      sent[u] = received[u] = 0;
    }
    cost.wire_bytes += sc.wire_bytes;
    cost.collective_calls += sc.collective_calls;
    cost.steps.push_back(std::move(sc));
  });
  for (std::size_t r = 0; r < ranks; ++r)
    if (cost.sent[r] + cost.received[r] > cost.bottleneck_bytes) {
      cost.bottleneck_bytes = cost.sent[r] + cost.received[r];
      cost.bottleneck_rank = static_cast<int>(r);
    }
  cost.hops = detail::hop_counter(walker).run(p);
  return cost;
}

// Bytes from each rank to each other rank over the whole plan: only pairs that exchange something, src !=
// dst, ascending by (src, dst). Same model as estimate_cost.
inline std::vector<traffic_entry> traffic_matrix(const plan& p, const storage_tracker& tracker) {
  detail::plan_walker walker("redist::traffic_matrix", p, tracker);
  std::vector<traffic_entry> all;
  std::vector<int> named;
  std::vector<detail::flow> flows;
  walker.each_step([&](std::size_t, std::size_t, const step& s) {
    walker.expand(s, named, flows);
    for (const auto& t : flows)
      if (t.src != t.dst && t.bytes > 0) all.push_back({t.src, t.dst, t.bytes});
  });
  std::sort(all.begin(), all.end(), [](const traffic_entry& a, const traffic_entry& b) {
    return std::tie(a.src, a.dst) < std::tie(b.src, b.dst);
  });
  std::vector<traffic_entry> out;
  for (const auto& e : all) {
    if (!out.empty() && out.back().src == e.src && out.back().dst == e.dst) {
      out.back().bytes += e.bytes;
    } else {
      out.push_back(e);
    }
  }
  return out;
}

}  // namespace redist
