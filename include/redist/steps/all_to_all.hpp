// redist::all_to_all_policy: runs an all_to_all_step as one all-to-all per round. With byte staging MPI reads
// the senders' tensors and writes the receivers' tensors in place; with float32 staging each payload is cast
// once however many replicas receive it, and every block is padded to the round's longest.
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <numeric>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/plan/steps.hpp"
#include "redist/steps/context.hpp"

namespace redist {

template <class Staging>
struct all_to_all_policy {
  using step_type = all_to_all_step;

  template <class Context>
  static void run(Context& ctx, const all_to_all_step& st) {
    const auto& comm = ctx.comm();
    const int me = comm.rank();
    const auto n = static_cast<std::size_t>(comm.size());

    // Every payload's length (for the rounds, which all ranks must agree on); streams only for the payloads
    // this rank sends or receives.
    std::vector<char> touches(st.payloads.size(), 0);
    for (const auto& r : st.routes)
      if (r.src == me || r.dst == me) touches[r.payload] = 1;
    std::vector<std::size_t> length(st.payloads.size());
    std::map<std::uint32_t, stream> mine;
    for (std::size_t p = 0; p < st.payloads.size(); ++p) {
      const auto& pl = st.payloads[p];
      stream s = ctx.make_stream(pl.ids, std::span(&st.keys[pl.key], 1));
      length[p] = s.bytes();
      if (touches[p]) mine.emplace(static_cast<std::uint32_t>(p), std::move(s));
    }
    std::vector<std::size_t> out(n, 0), in(n, 0);
    for (const auto& r : st.routes) {
      out[static_cast<std::size_t>(r.src)] += length[r.payload];
      in[static_cast<std::size_t>(r.dst)] += length[r.payload];
    }
    const std::size_t rounds = ctx.rounds_for(
        std::max(*std::max_element(out.begin(), out.end()), *std::max_element(in.begin(), in.end())));

    std::vector<const all_to_all_step::route*> sends, recvs;  // in (peer, key) order on both sides
    for (const auto& r : st.routes) {
      if (r.src == me) sends.push_back(&r);
      if (r.dst == me) {
        recvs.push_back(&r);
        ctx.declare(mine.at(r.payload));
      }
    }
    ctx.open_inbox();

    // With byte staging, one exchange per key once keys are large: a consumer that asks in arrival order
    // then receives each peer's part of a key as one block straight into its tensor, which saves copying
    // every received byte once more at the cost of an exchange per key. Every rank decides alike, from sizes.
    std::size_t parts = 1;
    if constexpr (Staging::in_place) {
      const std::size_t total = std::accumulate(in.begin(), in.end(), std::size_t{0});
      if (st.keys.size() > 1 && total / (n * st.keys.size()) >= split_bytes) parts = st.keys.size();
    }

    std::vector<std::vector<const_segment>> send(n);
    std::vector<std::vector<segment>> recv(n);
    std::vector<std::byte> scratch_out, scratch_in, trash, zeros;
    for (std::size_t exchange = 0; exchange < rounds * parts; ++exchange) {
      const std::size_t k = exchange / parts;
      // Routes of this exchange: all, or those of one key.
      auto here = [&](const all_to_all_step::route* r) {
        return parts == 1 || st.payloads[r->payload].key == exchange % parts;
      };
      for (auto& v : send) v.clear();
      for (auto& v : recv) v.clear();
      const std::size_t block = Staging::padded ? block_size(ctx, st, length, k, rounds) : 0;
      // Staged once per payload: routes of one payload share its packed window.
      std::map<std::uint32_t, const_segment> staged;
      if constexpr (!Staging::in_place) {
        std::size_t out_bytes = 0, in_bytes = 0, pad_bytes = 0;
        for (const auto& [p, s] : mine)
          if (st.payloads[p].src == me) out_bytes += win(ctx, length[p], k, rounds);
        for (const auto* r : recvs) {
          const std::size_t w = win(ctx, length[r->payload], k, rounds);
          in_bytes += w;
          pad_bytes += block - w;
        }
        scratch_out.resize(out_bytes);
        scratch_in.resize(in_bytes);
        trash.resize(pad_bytes);
        zeros.assign(block, std::byte{0});
      }
      std::size_t at = 0;
      for (const auto* r : sends) {
        if (!here(r)) continue;
        const auto [b, e] = Context::window(length[r->payload], k, rounds);
        auto& dst = send[static_cast<std::size_t>(r->dst)];
        if constexpr (Staging::in_place) {
          ctx.send_pieces(mine.at(r->payload), b, e, dst, nullptr);
        } else {
          auto it = staged.find(r->payload);
          if (it == staged.end()) {
            ctx.pack(mine.at(r->payload), b, e, scratch_out.data() + at);
            it = staged.emplace(r->payload, const_segment{scratch_out.data() + at, e - b}).first;
            at += e - b;
          }
          dst.push_back(it->second);
          if (block > e - b) dst.push_back({zeros.data(), block - (e - b)});
        }
      }
      std::size_t in_at = 0, trash_at = 0;
      for (const auto* r : recvs) {
        if (!here(r)) continue;
        const auto [b, e] = Context::window(length[r->payload], k, rounds);
        auto& src = recv[static_cast<std::size_t>(r->src)];
        ctx.recv_pieces(mine.at(r->payload), b, e, src, scratch_in.data() + in_at);
        in_at += Staging::in_place ? 0 : e - b;
        if (block > e - b) {
          src.push_back({trash.data() + trash_at, block - (e - b)});
          trash_at += block - (e - b);
        }
      }
      comm.alltoall_segments(send, recv);
      if constexpr (!Staging::in_place) {
        in_at = 0;
        for (const auto* r : recvs) {
          const auto [b, e] = Context::window(length[r->payload], k, rounds);
          ctx.unpack(mine.at(r->payload), b, e, scratch_in.data() + in_at);
          in_at += e - b;
        }
      }
    }
    ctx.commit();
  }

 private:
  // Average bytes per rank and key from which a step's keys move in separate exchanges: above it, copying
  // the bytes once more costs more than the latency of another exchange.
  static constexpr std::size_t split_bytes = std::size_t{64} << 10;

  template <class Context>
  static std::size_t win(const Context&, std::size_t length, std::size_t k, std::size_t rounds) {
    const auto [b, e] = Context::window(length, k, rounds);
    return e - b;
  }
  // The padded block of round k: the longest window of any route, as the reference pads to the longest.
  template <class Context>
  static std::size_t block_size(const Context& ctx, const all_to_all_step& st,
                                const std::vector<std::size_t>& length, std::size_t k, std::size_t rounds) {
    std::size_t block = 0;
    for (const auto& r : st.routes) block = std::max(block, win(ctx, length[r.payload], k, rounds));
    return block;
  }
};

}  // namespace redist
