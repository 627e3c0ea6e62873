// redist::all_to_all_policy: runs an all_to_all_step in rounds that fit the staging budget. With byte staging
// MPI reads the senders' tensors and writes the receivers' tensors in place, large keys in exchanges of their
// own started together; with float32 staging each route's window is cast into a slot of its own, every block
// padded to the round's longest, the padding counted in the budget.
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/plan/steps.hpp"
#include "redist/staging/exchange.hpp"
#include "redist/staging/policy.hpp"
#include "redist/steps/context.hpp"

namespace redist {

template <staging_policy Staging>
struct all_to_all_policy {
  using step_type = all_to_all_step;

  template <class Context>
  static void run(Context& ctx, const all_to_all_step& st) {
    const auto& comm = ctx.comm();
    const int me = comm.rank();
    const auto n = static_cast<std::size_t>(comm.size());

    // Every payload's length (for the rounds, which all ranks must agree on); streams only for the payloads
    // this rank sends or receives.
    // This rank's transfers, in (peer, key) order on both sides (routes ascend by (src, dst, key)).
    std::vector<step_transfer> sends, recvs;
    std::vector<char> touches(st.payloads.size(), 0);
    std::vector<std::size_t> out(n, 0), in(n, 0), routes(n, 0);
    for_each_transfer(
        st,
        [&](const step_transfer& t) {
          if (t.src == me) sends.push_back(t);
          if (t.dst == me) recvs.push_back(t);
          if (t.src == me || t.dst == me) touches[t.list] = 1;
        },
        [](const std::string& defect) { detail::fail("redist::redistribute: ", defect); });
    std::vector<std::size_t> length(st.payloads.size());
    std::map<std::uint32_t, stream> mine;
    for (std::size_t p = 0; p < st.payloads.size(); ++p) {
      const auto& pl = st.payloads[p];
      stream s = ctx.make_stream(pl.ids, std::span(&st.keys[pl.key], 1));
      length[p] = s.bytes();
      if (touches[p]) mine.emplace(static_cast<std::uint32_t>(p), std::move(s));
    }
    std::size_t longest = 0;
    for (const auto& r : st.routes) {
      out[static_cast<std::size_t>(r.src)] += length[r.payload];
      in[static_cast<std::size_t>(r.dst)] += length[r.payload];
      routes[static_cast<std::size_t>(r.src)] += 1;
      routes[static_cast<std::size_t>(r.dst)] += 1;  // a bound on either direction's route count
      longest = std::max(longest, length[r.payload]);
    }
    std::size_t staged =
        std::max(*std::max_element(out.begin(), out.end()), *std::max_element(in.begin(), in.end()));
    // Padded, a rank sends and receives every route's block at the round's longest: the budget counts it.
    if constexpr (Staging::padded)
      staged = std::max(staged, *std::max_element(routes.begin(), routes.end()) * longest);
    const std::size_t rounds = staging_rounds<Staging>(staged, ctx.options().max_staging_bytes);
    for (const auto& t : recvs) ctx.declare(mine.at(t.list));
    ctx.open_inbox();

    // With the staging in place, once keys are large each moves in an exchange of its own (see
    // exchange_in_place). Every rank decides alike, from sizes.
    const std::size_t total = std::accumulate(in.begin(), in.end(), std::size_t{0});
    const std::size_t parts =
        Staging::in_place && st.keys.size() > 1 && total / (n * st.keys.size()) >= split_bytes
            ? st.keys.size()
            : 1;
    auto out_block = ctx.buffer(), in_block = ctx.buffer();  // a converting staging's, kept across rounds
    for (std::size_t k = 0; k < rounds; ++k) {
      if constexpr (Staging::in_place) {
        exchange_in_place(ctx, mine, length, sends, recvs, k, rounds, parts);
      } else {
        exchange_staged(ctx, st, mine, length, sends, recvs, k, rounds, out_block, in_block);
      }
    }
    ctx.commit();
  }

 private:
  // Round k with the staging in place: MPI reads the senders' tensors and writes the receivers' tensors, a
  // peer's scattered pieces packed (unpacked) on the way, see detail::packed_exchange. With `parts` > 1 each
  // key moves in an exchange of its own: a consumer that asks in arrival order then receives each peer's
  // part of a key as one block straight into its tensor, which saves copying every received byte once more.
  // Every exchange of the round is packed and started before any is waited for, so the ranks meet once per
  // round however many there are.
  template <class Context>
  static void exchange_in_place(Context& ctx, const std::map<std::uint32_t, stream>& mine,
                                const std::vector<std::size_t>& length,
                                const std::vector<step_transfer>& sends,
                                const std::vector<step_transfer>& recvs, std::size_t k, std::size_t rounds,
                                std::size_t parts) {
    const auto& comm = ctx.comm();
    const auto n = static_cast<std::size_t>(comm.size());
    auto in_part = [&](const step_transfer& t, std::size_t part) {
      return parts == 1 || t.first_key == part;
    };
    std::vector<std::vector<std::vector<const_segment>>> send(parts,
                                                              std::vector<std::vector<const_segment>>(n));
    std::vector<std::vector<std::vector<segment>>> recv(parts, std::vector<std::vector<segment>>(n));
    for (std::size_t part = 0; part < parts; ++part) {
      for (const auto& t : sends) {
        if (!in_part(t, part)) continue;
        const auto [b, e] = staging_window<Staging>(length[t.list], k, rounds);
        ctx.send_pieces(mine.at(t.list), b, e, send[part][static_cast<std::size_t>(t.dst)]);
      }
      for (const auto& t : recvs) {
        if (!in_part(t, part)) continue;
        const auto [b, e] = staging_window<Staging>(length[t.list], k, rounds);
        ctx.recv_pieces(mine.at(t.list), b, e, recv[part][static_cast<std::size_t>(t.src)]);
      }
    }
    // The packing of every part in one block of the context's scratch (the caller's kept workspace when it
    // gave one), made in one go before any exchange starts.
    using space = typename Context::space_type;
    using exchange = detail::segment_exchange<std::decay_t<decltype(comm)>, space>;
    using packing = detail::packed_exchange<space>;
    const auto me = static_cast<std::size_t>(comm.rank());
    std::vector<std::size_t> at(parts + 1, 0);
    for (std::size_t part = 0; part < parts; ++part)
      at[part + 1] = at[part] + packing::scratch_bytes(send[part], recv[part], me);
    auto own = ctx.buffer();
    std::byte* scratch = at[parts] != 0 ? ctx.scratch(at[parts], own) : nullptr;
    std::vector<std::optional<exchange>> started(parts);
    for (std::size_t part = 0; part < parts; ++part)
      started[part].emplace(comm, send[part], recv[part], scratch == nullptr ? nullptr : scratch + at[part],
                            ctx.space());
    for (auto& e : started) e->wait();
  }

  // Average bytes per rank and key from which a step's keys move in separate exchanges: above it, copying
  // the bytes once more costs more than the latency of another exchange.
  static constexpr std::size_t split_bytes = std::size_t{64} << 10;

  // Round k with a staging that converts: each route's window is cast into the wire format in a slot of its
  // own, every block padded to the round's longest when the staging pads, and what arrives unpacked from a
  // landing buffer.
  template <class Context>
  static void exchange_staged(Context& ctx, const all_to_all_step& st,
                              const std::map<std::uint32_t, stream>& mine,
                              const std::vector<std::size_t>& length, const std::vector<step_transfer>& sends,
                              const std::vector<step_transfer>& recvs, std::size_t k, std::size_t rounds,
                              detail::space_buffer<typename Context::space_type>& out_buffer,
                              detail::space_buffer<typename Context::space_type>& in_buffer) {
    const auto& comm = ctx.comm();
    const auto n = static_cast<std::size_t>(comm.size());
    std::vector<std::vector<const_segment>> send(n);
    std::vector<std::vector<segment>> recv(n);
    const std::size_t block = Staging::padded ? block_size(ctx, st, length, k, rounds) : 0;
    // One slot per route on each side, a peer's slots in a row (routes are in (peer, key) order), so that
    // each peer's blocks are one piece and nothing is packed again; a payload with several destinations is
    // cast once per route.
    auto slot = [&](const step_transfer& t) {
      return Staging::padded ? block : win(ctx, length[t.list], k, rounds);
    };
    std::size_t out_bytes = 0, in_bytes = 0;
    for (const auto& t : sends) out_bytes += slot(t);
    for (const auto& t : recvs) in_bytes += slot(t);
    const auto out = out_buffer.zeroed(out_bytes);  // zeros beyond each window are the padding
    const auto in =
        in_buffer.zeroed(in_bytes);  // touched before MPI writes it: cheaper than faults in its copy
    std::size_t at = 0;
    for (const auto& t : sends) {
      const auto [b, e] = staging_window<Staging>(length[t.list], k, rounds);
      ctx.pack(mine.at(t.list), b, e, out.data() + at);
      detail::append_piece(send[static_cast<std::size_t>(t.dst)], const_segment{out.data() + at, slot(t)});
      at += slot(t);
    }
    at = 0;
    for (const auto& t : recvs) {
      detail::append_piece(recv[static_cast<std::size_t>(t.src)], segment{in.data() + at, slot(t)});
      at += slot(t);
    }
    ctx.flush();
    detail::exchange_segments(comm, send, recv, ctx.space());
    at = 0;
    for (const auto& t : recvs) {
      const auto [b, e] = staging_window<Staging>(length[t.list], k, rounds);
      ctx.unpack(mine.at(t.list), b, e, in.data() + at);
      at += slot(t);
    }
    ctx.flush();
  }

  template <class Context>
  static std::size_t win(const Context&, std::size_t length, std::size_t k, std::size_t rounds) {
    const auto [b, e] = staging_window<Staging>(length, k, rounds);
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
