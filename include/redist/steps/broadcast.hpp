// redist::broadcast_policy: runs a broadcast_step as a broadcast on the sub-group {root} + dsts, or as a
// plain send/recv when there is one destination; in rounds that fit the staging budget.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "redist/plan/steps.hpp"
#include "redist/staging/policy.hpp"
#include "redist/steps/context.hpp"

namespace redist {

template <staging_policy Staging>
struct broadcast_policy {
  using step_type = broadcast_step;

  template <class Context>
  static void run(Context& ctx, const broadcast_step& st) {
    const auto& comm = ctx.comm();
    const int me = comm.rank();
    const bool root = me == st.root;
    const bool dst = std::find(st.dsts.begin(), st.dsts.end(), me) != st.dsts.end();
    if (!root && !dst) return;
    const stream s = ctx.make_stream(st.ids, st.keys);
    const std::size_t rounds = staging_rounds<Staging>(s.bytes(), ctx.options().max_staging_bytes);
    if (dst) {
      ctx.declare(s);
      ctx.open_inbox();
    }
    const step_group g(st.dsts, st.root);
    const auto* group = st.dsts.size() == 1 ? nullptr : comm.group(g.ranks);
    const int group_root = static_cast<int>(g.index(st.root));
    auto buffer = ctx.buffer();
    for (std::size_t k = 0; k < rounds; ++k) {
      const auto [b, e] = staging_window<Staging>(s.bytes(), k, rounds);
      const auto buf = buffer.zeroed(e - b);  // touched before MPI writes it
      if (root) {
        ctx.pack(s, b, e, buf.data());
        ctx.flush();
      }
      if (!group) {
        if (root)
          comm.send(buf, st.dsts.front(), 0);
        else
          comm.recv(buf, st.root, 0);
      } else {
        group->broadcast(buf, group_root);
      }
      if (dst) {
        ctx.unpack(s, b, e, buf.data());
        ctx.flush();
      }
    }
    if (dst) ctx.commit();
  }
};

}  // namespace redist
