// shard_scatter's layout of a batch on one rank, computed on one process: what it sends each rank and
// receives from each owner, where the pieces land (in place or in staging), slicing a tensor into shards, and
// the staging it needs (shard_workspace_bytes).
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/text.hpp"
#include "redist/plan/shard.hpp"

namespace redist {

// A result of shard_scatter: a tensor's name and this rank's shard (or copy) of it.
template <class Tensor>
struct named_tensor {
  std::string name;
  Tensor tensor;
};

namespace detail {

// Lists the copies of shard p of a tensor cut along `dim` into to[p] for every p: outer blocks of the dims
// before `dim`, each holding one contiguous run per rank. `copies` takes them (a phase_copies: made at once
// on the host, listed on a device for the one table that slices the whole tensor).
template <class Copies>
void slice_shards(const std::byte* from, const shard_spec& s, std::size_t n, std::span<std::byte* const> to,
                  Copies& copies) {
  const auto k = static_cast<std::size_t>(*s.shard_dim);
  std::size_t outer = 1, inner = size_of(s.dtype);
  for (std::size_t d = 0; d < k; ++d) outer *= static_cast<std::size_t>(s.shape[d]);
  for (std::size_t d = k + 1; d < s.shape.size(); ++d) inner *= static_cast<std::size_t>(s.shape[d]);
  const std::size_t run = static_cast<std::size_t>(s.shape[k]) / n * inner;
  if (run == 0) return;
  for (std::size_t i = 0; i < outer; ++i, from += run * n) {
    for (std::size_t p = 0; p < n; ++p) copies.copy(to[p] + i * run, from + p * run, run);
  }
}

template <class T>
concept has_contiguity = requires(const T& t) {
  { tensor_traits<T>::is_contiguous(t) } -> std::convertible_to<bool>;
};

// Empty when the loaded tensor matches its spec, else what is wrong.
template <tensor_like Loaded>
std::string check_loaded(const Loaded& t, const shard_spec& s, std::size_t index) {
  using traits = tensor_traits<Loaded>;
  std::vector<std::int64_t> shape(traits::rank(t));
  for (std::size_t d = 0; d < shape.size(); ++d) shape[d] = traits::extent(t, d);
  bool contiguous = true;
  if constexpr (has_contiguity<Loaded>) contiguous = traits::is_contiguous(t);
  if (traits::dtype(t) == s.dtype && shape == s.shape && contiguous) return {};
  return "redist::shard_scatter: load(" + std::to_string(index) + ") returned a " +
         (contiguous ? "" : "non-contiguous ") + std::string(name(traits::dtype(t))) + " tensor of shape " +
         shape_text(shape) + " for tensor '" + s.name + "', expected " + std::string(name(s.dtype)) + " " +
         shape_text(s.shape);
}

// The smallest piece of a batch that a rank receives straight into its result (each source's message spread
// over its pieces by the transport), or that its owner sends straight from its tensor; smaller ones travel in
// staging, packed and unpacked. In place saves a copy, but Open MPI 4.1 moves a derived datatype through its
// copy-in/copy-out pipeline, not the single copy of a contiguous message, so small pieces are cheaper staged.
// bench_shard at 2 ranks, 316 MB model: 28-34 ms with large shards received in place, 40-43 ms with every
// piece staged.
inline constexpr std::size_t shard_direct_min = std::size_t{64} << 10;

// Per spec, whether its owner sends it from the full tensor itself rather than packed into staging: with
// other ranks, a shard that is one run of the tensor (a replicated tensor, or a cut with nothing but extents
// of 1 before its dim: dim 0) of shard_direct_min bytes or more. Its receivers take it in place too.
inline std::vector<std::uint8_t> shards_in_place(std::span<const shard_spec> specs,
                                                 std::span<const shard_sizes> sizes, std::size_t n) {
  std::vector<std::uint8_t> in_place(specs.size(), 0);
  for (std::size_t i = 0; n > 1 && i < specs.size(); ++i) {
    const auto& shape = specs[i].shape;
    const auto dim = static_cast<std::ptrdiff_t>(specs[i].shard_dim.value_or(0));
    const bool run = std::all_of(shape.begin(), shape.begin() + dim, [](std::int64_t e) { return e == 1; });
    in_place[i] = run && sizes[i].per_rank >= shard_direct_min ? 1 : 0;
  }
  return in_place;
}

// A piece of what a rank receives from one owner in a batch: a tensor's shard (or copy), or the flag.
struct shard_piece {
  static constexpr std::size_t flag = SIZE_MAX;    // spec: the success flag
  static constexpr std::size_t direct = SIZE_MAX;  // staged: received into its result
  std::size_t spec = 0;
  std::size_t bytes = 0;
  std::size_t staged = direct;  // else its offset in the batch's receive staging
  bool in_place = false;        // sent from the owner's tensor (shards_in_place), so received in place
};

// Within a batch, what an owner sends another rank is its tensors of the batch in spec order (each a shard or
// the whole): those sent in place from the tensors, the others packed in a row into its staging block for
// that rank, so an owner sends every other rank as many bytes and every rank knows what arrives from whom.
// The last batch adds a success flag after each block; a rank receives them into its staging in a row
// (source order, itself left out), after the staged pieces, so that one read takes them all (one wait for
// the stream on a device).
struct shard_layout {
  std::vector<std::size_t> send_counts, send_displs;  // the staging blocks
  std::size_t block = 0;                              // bytes of packed tensors in each block this rank sends
  std::size_t send_bytes = 0;                         // this rank's send staging
  std::size_t staged = 0;  // this rank's receive staging: its pieces under shard_direct_min, the flags
  std::size_t flags = 0;   // where the flags are in it (the last batch)
  std::vector<std::vector<shard_piece>> from;  // per source rank, what arrives, in order
  bool moves = false;  // whether the batch is exchanged: some bytes cross ranks, or it is the last
};

// Batch b's layout on rank `mine` of n.
inline void lay_out(const shard_plan& plan, std::span<const shard_sizes> sizes,
                    std::span<const std::uint8_t> in_place, std::size_t b, std::size_t mine, std::size_t n,
                    shard_layout& l) {
  const bool last = b + 1 == plan.batches();
  l.block = l.staged = 0;
  l.moves = last && n > 1;
  l.from.resize(n);
  for (auto& pieces : l.from) pieces.clear();
  for (std::size_t i = plan.batch_starts[b]; i < plan.batch_starts[b + 1]; ++i) {
    const auto o = static_cast<std::size_t>(plan.owners[i]);
    l.moves = l.moves || sizes[i].sent != 0;
    if (o == mine) {
      l.block += in_place[i] != 0 ? 0 : sizes[i].per_rank;
    } else if (sizes[i].per_rank != 0) {
      l.from[o].push_back({i, sizes[i].per_rank, shard_piece::direct, in_place[i] != 0});
    }
  }
  for (auto& pieces : l.from) {
    for (shard_piece& piece : pieces) {
      if (piece.bytes >= shard_direct_min) continue;
      piece.staged = l.staged;
      l.staged += piece.bytes;
    }
  }
  l.flags = l.staged;
  for (std::size_t o = 0; last && o < n; ++o) {
    if (o != mine) l.from[o].push_back({shard_piece::flag, 1, l.staged++});
  }
  l.send_counts.assign(n, l.block + (last ? 1 : 0));
  l.send_counts[mine] = 0;
  l.send_displs.assign(n, 0);
  l.send_bytes = 0;
  for (std::size_t p = 0; p < n; ++p) {
    l.send_displs[p] = l.send_bytes;
    l.send_bytes += l.send_counts[p];
  }
}

// Staging bytes on rank `mine`: send (the packed pieces) for even and odd batches, then receive (the pieces
// under shard_direct_min) for even and odd batches; the largest batch of each parity, as two are in flight
// at once.
inline std::array<std::size_t, 4> staging_bytes(const shard_plan& plan, std::span<const shard_sizes> sizes,
                                                std::span<const std::uint8_t> in_place, std::size_t mine,
                                                std::size_t n) {
  std::array<std::size_t, 4> need{};
  shard_layout l;
  for (std::size_t b = 0; b < plan.batches(); ++b) {
    lay_out(plan, sizes, in_place, b, mine, n, l);
    need[b % 2] = std::max(need[b % 2], l.send_bytes);
    need[2 + b % 2] = std::max(need[2 + b % 2], l.staged);
  }
  return need;
}

}  // namespace detail

// The bytes of staging shard_scatter needs on `rank` of `ranks` ranks for these specs and options: how large
// a shard_options::workspace must be. Throws redist::error on invalid specs, like plan_shards.
inline std::size_t shard_workspace_bytes(std::span<const shard_spec> specs, int rank, int ranks,
                                         const shard_options& options = {}) {
  std::vector<detail::shard_sizes> sizes;
  const shard_plan plan = detail::plan_shards("redist::shard_workspace_bytes", specs, ranks, options, sizes);
  if (rank < 0 || rank >= ranks) {
    detail::fail("redist::shard_workspace_bytes: rank ", rank, " is out of range for a communicator of size ",
                 ranks);
  }
  const auto n = static_cast<std::size_t>(ranks);
  const auto need = detail::staging_bytes(plan, sizes, detail::shards_in_place(specs, sizes, n),
                                          static_cast<std::size_t>(rank), n);
  return need[0] + need[1] + need[2] + need[3];
}

}  // namespace redist
