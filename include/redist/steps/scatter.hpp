// redist::scatter_policy: runs a scatter_step on the sub-group {root} + dsts. Destinations that want the same
// ids (tensor/pipe replicas) share one staged window on the root; with float32 staging every block is padded
// to the longest; with byte staging nothing is staged at all. The exchange is an all-to-all in which only the
// root sends, which lets several destinations read one buffer (a scatterv may not read a location twice).
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/plan/steps.hpp"
#include "redist/staging/exchange.hpp"
#include "redist/staging/policy.hpp"
#include "redist/steps/context.hpp"

namespace redist {

template <staging_policy Staging>
struct scatter_policy {
  using step_type = scatter_step;

  template <class Context>
  static void run(Context& ctx, const scatter_step& st) {
    const auto& comm = ctx.comm();
    const int me = comm.rank();
    const step_group g(st.dsts, st.root);
    if (!g.contains(me)) return;
    const auto& ranks = g.ranks;
    auto index = [&](int r) { return g.index(r); };
    const bool root = me == st.root;

    // One stream per distinct id list; member j receives list_of[j] (none for the root, which holds it all).
    std::map<id_list, std::size_t> distinct;
    std::vector<stream> streams;
    std::vector<std::size_t> list_of(ranks.size(), SIZE_MAX);
    for (std::size_t i = 0; i < st.dsts.size(); ++i) {
      if (st.dsts[i] == st.root) continue;
      auto [it, fresh] = distinct.try_emplace(st.ids[i], streams.size());
      if (fresh) streams.push_back(ctx.make_stream(st.ids[i], st.keys));
      list_of[index(st.dsts[i])] = it->second;
    }
    std::size_t staged_total = 0, largest = 0;
    for (const auto& s : streams) {
      staged_total += s.bytes();
      largest = std::max(largest, s.bytes());
    }
    // Padded, the root stages every distinct list's window at the longest: the budget counts the padding.
    const std::size_t rounds =
        staging_rounds<Staging>(Staging::padded ? largest * streams.size() : std::max(staged_total, largest),
                                ctx.options().max_staging_bytes);
    const std::size_t my_list = list_of[index(me)];
    if (my_list != SIZE_MAX) {
      ctx.declare(streams[my_list]);
      ctx.open_inbox();
    }
    const auto* group = comm.group(ranks);
    const auto group_root = index(st.root);
    std::vector<std::vector<const_segment>> send(ranks.size());
    std::vector<std::vector<segment>> recv(ranks.size());
    auto staged_buffer = ctx.buffer(), in_buffer = ctx.buffer();
    std::vector<std::size_t> at(streams.size());
    for (std::size_t k = 0; k < rounds; ++k) {
      std::size_t block = 0;
      for (const auto& s : streams) {
        const auto [b, e] = staging_window<Staging>(s.bytes(), k, rounds);
        block = std::max(block, e - b);
      }
      auto size_of_window = [&](std::size_t l) {
        const auto [b, e] = staging_window<Staging>(streams[l].bytes(), k, rounds);
        return Staging::padded ? block : e - b;
      };
      for (auto& v : send) v.clear();
      for (auto& v : recv) v.clear();
      if constexpr (Staging::in_place) {
        // Exact bytes: MPI reads the root's tensors and writes the receivers' tensors directly.
        for (std::size_t j = 0; root && j < ranks.size(); ++j)
          if (list_of[j] != SIZE_MAX) {
            const auto [b, e] = staging_window<Staging>(streams[list_of[j]].bytes(), k, rounds);
            ctx.send_pieces(streams[list_of[j]], b, e, send[j]);
          }
        if (my_list != SIZE_MAX) {
          const auto [b, e] = staging_window<Staging>(streams[my_list].bytes(), k, rounds);
          ctx.recv_pieces(streams[my_list], b, e, recv[group_root]);
        }
        detail::exchange_segments(*group, send, recv, ctx.space());
        continue;
      }
      if (root) {
        std::size_t total = 0;
        for (std::size_t l = 0; l < streams.size(); ++l) {
          at[l] = total;
          total += size_of_window(l);
        }
        const auto staged = staged_buffer.zeroed(total);  // zeros beyond each window are the padding
        for (std::size_t l = 0; l < streams.size(); ++l) {
          const auto [b, e] = staging_window<Staging>(streams[l].bytes(), k, rounds);
          ctx.pack(streams[l], b, e, staged.data() + at[l]);
        }
        ctx.flush();
        for (std::size_t j = 0; j < ranks.size(); ++j)
          if (list_of[j] != SIZE_MAX)
            send[j].push_back({staged.data() + at[list_of[j]], size_of_window(list_of[j])});
      }
      if (my_list != SIZE_MAX) {
        const auto in = in_buffer.zeroed(size_of_window(my_list));  // touched before MPI writes it
        recv[group_root].push_back({in.data(), in.size()});
      }
      detail::exchange_segments(*group, send, recv, ctx.space());
      if (my_list != SIZE_MAX) {
        const auto [b, e] = staging_window<Staging>(streams[my_list].bytes(), k, rounds);
        ctx.unpack(streams[my_list], b, e, in_buffer.data());
        ctx.flush();
      }
    }
    if (my_list != SIZE_MAX) ctx.commit();
  }
};

}  // namespace redist
