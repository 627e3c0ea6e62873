// redist::gather_policy: runs a gather_step as a gather(v) on the sub-group srcs + {root}: variable counts
// with byte staging, counts padded to the longest participant with float32 staging; in budget-sized rounds.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "redist/plan/steps.hpp"
#include "redist/staging/policy.hpp"
#include "redist/steps/context.hpp"

namespace redist {

template <staging_policy Staging>
struct gather_policy {
  using step_type = gather_step;

  template <class Context>
  static void run(Context& ctx, const gather_step& st) {
    const auto& comm = ctx.comm();
    const int me = comm.rank();
    const step_group g(st.srcs, st.root);
    if (!g.contains(me)) return;
    const auto& ranks = g.ranks;
    auto index = [&](int r) { return g.index(r); };

    // Member j's stream; the root keeps what it holds and so contributes nothing.
    std::vector<stream> streams(ranks.size());
    for (std::size_t i = 0; i < st.srcs.size(); ++i)
      if (st.srcs[i] != st.root) streams[index(st.srcs[i])] = ctx.make_stream(st.ids[i], st.keys);
    std::size_t total = 0, longest_stream = 0;
    for (const auto& s : streams) {
      total += s.bytes();
      longest_stream = std::max(longest_stream, s.bytes());
    }
    // Padded, the root receives every member's block at the longest: the budget counts the padding.
    const std::size_t rounds = staging_rounds<Staging>(
        Staging::padded ? longest_stream * ranks.size() : total, ctx.options().max_staging_bytes);
    const bool root = me == st.root;
    if (root) {
      for (const auto& s : streams) ctx.declare(s);
      ctx.open_inbox();
    }
    const auto* group = comm.group(ranks);
    const int group_root = static_cast<int>(index(st.root));
    const stream& mine = streams[index(me)];
    std::vector<std::size_t> counts(ranks.size()), displs(ranks.size());
    auto out_buffer = ctx.buffer(), in_buffer = ctx.buffer();
    for (std::size_t k = 0; k < rounds; ++k) {
      std::size_t longest = 0;
      for (std::size_t j = 0; j < ranks.size(); ++j) {
        const auto [b, e] = staging_window<Staging>(streams[j].bytes(), k, rounds);
        counts[j] = e - b;
        longest = std::max(longest, e - b);
      }
      if constexpr (Staging::padded) std::fill(counts.begin(), counts.end(), longest);
      for (std::size_t j = 0, at = 0; j < ranks.size(); at += counts[j], ++j) displs[j] = at;
      const auto [b, e] = staging_window<Staging>(mine.bytes(), k, rounds);
      const auto out = out_buffer.zeroed(counts[index(me)]);  // zeros beyond e - b are the padding
      ctx.pack(mine, b, e, out.data());
      ctx.flush();
      // Zeroed: pages touched before MPI writes them cost less than pages faulted inside its copy.
      const auto in = root ? in_buffer.zeroed(displs.back() + counts.back()) : std::span<std::byte>();
      group->gatherv(out, in, counts, displs, group_root);
      if (root) {
        for (std::size_t j = 0; j < ranks.size(); ++j) {
          const auto [bj, ej] = staging_window<Staging>(streams[j].bytes(), k, rounds);
          ctx.unpack(streams[j], bj, ej, in.data() + displs[j]);
        }
        ctx.flush();
      }
    }
    if (root) ctx.commit();
  }
};

}  // namespace redist
