// redist::plan_shards: the pure plan of shard_scatter, made alike on every rank: the specs checked, an owner
// for each tensor (balanced by bytes) and the tensors grouped into batches within the budget.
#pragma once

#include <algorithm>
#include <array>
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
#include "redist/detail/checked.hpp"
#include "redist/detail/hash.hpp"
#include "redist/detail/text.hpp"

namespace redist {

// One full tensor of the model, described alike on every rank (shard_scatter checks that they agree).
struct shard_spec {
  std::string name;  // unique among the specs
  redist::dtype dtype = redist::dtype::f32;
  std::vector<std::int64_t> shape;
  std::optional<int> shard_dim;  // cut into size() equal shards along this dim; none: every rank gets a copy
  std::optional<int> owner;      // the rank that loads it; none: chosen by plan_shards to balance bytes
};

struct shard_options {
  // The most bytes one rank packs to send, or receives, in one batch (each direction, its own shards of the
  // tensors it owns excluded). Tensors join a batch in spec order while every rank stays within it; a tensor
  // that alone exceeds it is a batch of its own. shard_scatter packs one batch while the previous one moves,
  // so its send staging peaks at about twice this (two batches). It receives in place, but for shards under
  // 64 KiB, which it stages too (twice what such shards of a batch take, at most twice this again).
  std::size_t max_batch_bytes = std::size_t{64} << 20;
  // Staging memory from the caller, at least shard_workspace_bytes(...) bytes, reused from call to call
  // (fresh memory costs page faults that can cost more than the copies). Empty: shard_scatter allocates
  // its own for the call.
  std::span<std::byte> workspace = {};
};

// Who loads each tensor and how the tensors are grouped into batches; every rank derives the same one.
struct shard_plan {
  std::vector<int> owners;                // per spec
  std::vector<std::size_t> batch_starts;  // batch b holds specs [batch_starts[b], batch_starts[b + 1])

  std::size_t batches() const noexcept { return batch_starts.empty() ? 0 : batch_starts.size() - 1; }
};

namespace detail {

// What the plan needs of one spec, checked: its bytes, the bytes each other rank receives of it (a shard or
// the whole) and the bytes its owner sends to all of them together.
struct shard_sizes {
  std::size_t bytes = 0;
  std::size_t per_rank = 0;
  std::size_t sent = 0;
};

// Throws unless the specs are valid for `ranks` ranks: unique names, known dtypes, extents that are not
// negative and sizes that do not overflow, shard dims in range that divide evenly (ragged shards would need
// every rank to know every other's extent, and the reference system refuses them too), owners in range.
inline std::vector<shard_sizes> check_shard_specs(const char* who, std::span<const shard_spec> specs,
                                                  int ranks) {
  if (ranks < 1) fail(who, ": a communicator of ", ranks, " ranks");
  const auto n = static_cast<std::size_t>(ranks);
  std::vector<shard_sizes> sizes(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const shard_spec& s = specs[i];
    if (size_of(s.dtype) == 0) fail(who, ": tensor '", s.name, "' has an unknown dtype");
    for (std::size_t d = 0; d < s.shape.size(); ++d) {
      if (s.shape[d] < 0)
        fail(who, ": tensor '", s.name, "': extent ", s.shape[d], " of dim ", d, " is negative");
    }
    std::size_t bytes = size_of(s.dtype);
    for (const std::int64_t e : s.shape) {
      if (!checked_mul(bytes, static_cast<std::size_t>(e), bytes))
        fail(who, ": tensor '", s.name, "': size overflows");
    }
    if (s.shard_dim) {
      const int k = *s.shard_dim;
      if (k < 0 || static_cast<std::size_t>(k) >= s.shape.size()) {
        fail(who, ": tensor '", s.name, "': shard dim ", k, " is out of range for a tensor of ",
             s.shape.size(), " dims, shape ", shape_text(s.shape));
      }
      const std::int64_t extent = s.shape[static_cast<std::size_t>(k)];
      if (extent % ranks != 0) {
        fail(who, ": tensor '", s.name, "': dim ", k, " of extent ", extent, " does not divide into ", ranks,
             " equal shards (ragged shards are not supported)");
      }
    }
    if (s.owner && (*s.owner < 0 || *s.owner >= ranks)) {
      fail(who, ": tensor '", s.name, "': owner ", *s.owner, " is out of range for a communicator of size ",
           ranks);
    }
    sizes[i].bytes = bytes;
  }
  // Bounds every sum the plan and the staging take (a rank's bytes in a batch, an owner's to all others).
  std::size_t all = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (!checked_add(all, sizes[i].bytes, all) || all > static_cast<std::size_t>(PTRDIFF_MAX) / n) {
      fail(who, ": the tensors' total size times the number of ranks (", ranks, ") overflows");
    }
    sizes[i].per_rank = specs[i].shard_dim ? sizes[i].bytes / n : sizes[i].bytes;
    sizes[i].sent = sizes[i].per_rank * (n - 1);
  }
  // Duplicate names: sorted by the names' fingerprints, equal names are neighbours. The first spec whose name
  // an earlier one has is named, with that earlier one.
  std::vector<std::pair<std::uint64_t, std::size_t>> by_hash(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) by_hash[i] = {fingerprint().add(specs[i].name).value(), i};
  std::sort(by_hash.begin(), by_hash.end());
  std::size_t first = 0, again = SIZE_MAX;
  for (std::size_t k = 1; k < by_hash.size(); ++k) {
    const auto [h, i] = by_hash[k];
    for (std::size_t j = k; j-- > 0 && by_hash[j].first == h;) {
      if (specs[by_hash[j].second].name == specs[i].name && i < again) {
        first = by_hash[j].second;
        again = i;
      }
    }
  }
  if (again != SIZE_MAX) {
    fail(who, ": tensor name '", specs[again].name, "' appears twice (specs ", first, " and ", again, ")");
  }
  return sizes;
}

// Given owners stand; the others go, largest first (ties in spec order), each to the rank with the fewest
// bytes so far (ties to the lowest rank), given ones counted.
inline std::vector<int> choose_owners(std::span<const shard_spec> specs, std::span<const shard_sizes> sizes,
                                      int ranks) {
  std::vector<int> owners(specs.size(), -1);
  std::vector<std::size_t> load(static_cast<std::size_t>(ranks), 0);
  std::vector<std::size_t> open;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].owner) {
      owners[i] = *specs[i].owner;
      load[static_cast<std::size_t>(owners[i])] += sizes[i].bytes;
    } else {
      open.push_back(i);
    }
  }
  std::stable_sort(open.begin(), open.end(),
                   [&](std::size_t a, std::size_t b) { return sizes[a].bytes > sizes[b].bytes; });
  using entry = std::pair<std::size_t, int>;  // (bytes so far, rank): the smallest on top
  std::priority_queue<entry, std::vector<entry>, std::greater<>> least;
  for (int r = 0; r < ranks; ++r) least.emplace(load[static_cast<std::size_t>(r)], r);
  for (const std::size_t i : open) {
    const auto [bytes, r] = least.top();
    least.pop();
    owners[i] = r;
    least.emplace(bytes + sizes[i].bytes, r);
  }
  return owners;
}

// Batch boundaries: tensors join the open batch in spec order while every rank's bytes to send (the sum of
// `sent` over the tensors it owns) and to receive (`per_rank` over the tensors it does not own) stay within
// the budget; a tensor that does not fit starts the next batch, so one over the budget alone is a batch of
// its own. A rank's receive bytes are the batch's total per_rank less its own tensors', so the largest is
// the total less the smallest own sum, which is 0 while some rank owns nothing in the batch. No sum
// overflows: check_shard_specs bounds the total bytes times the ranks.
inline std::vector<std::size_t> batch_bounds(std::span<const shard_sizes> sizes, std::span<const int> owners,
                                             int ranks, std::size_t budget) {
  const auto n = static_cast<std::size_t>(ranks);
  std::vector<std::size_t> starts{0};
  std::vector<std::size_t> send(n, 0), own(n, 0);  // per rank, in the open batch
  std::vector<char> owns(n, 0);
  std::vector<std::size_t> owning;  // the ranks that own something in the open batch
  std::size_t total = 0, max_send = 0;
  auto max_recv_with = [&](std::size_t o, std::size_t per_rank) {
    std::size_t least_own = 0;
    if (owning.size() + (owns[o] != 0 ? 0 : 1) == n) {
      least_own = SIZE_MAX;
      for (std::size_t r = 0; r < n; ++r) least_own = std::min(least_own, own[r] + (r == o ? per_rank : 0));
    }
    return total + per_rank - least_own;
  };
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto o = static_cast<std::size_t>(owners[i]);
    if (i != starts.back() && (std::max(max_send, send[o] + sizes[i].sent) > budget ||
                               max_recv_with(o, sizes[i].per_rank) > budget)) {
      for (const std::size_t r : owning) {
        send[r] = own[r] = 0;
        owns[r] = 0;
      }
      owning.clear();
      total = max_send = 0;
      starts.push_back(i);
    }
    if (owns[o] == 0) {
      owns[o] = 1;
      owning.push_back(o);
    }
    send[o] += sizes[i].sent;
    own[o] += sizes[i].per_rank;
    total += sizes[i].per_rank;
    max_send = std::max(max_send, send[o]);
  }
  if (!sizes.empty()) starts.push_back(sizes.size());
  return starts;
}

inline shard_plan plan_shards(const char* who, std::span<const shard_spec> specs, int ranks,
                              const shard_options& options, std::vector<shard_sizes>& sizes) {
  sizes = check_shard_specs(who, specs, ranks);
  shard_plan plan;
  plan.owners = choose_owners(specs, sizes, ranks);
  plan.batch_starts = batch_bounds(sizes, plan.owners, ranks, options.max_batch_bytes);
  return plan;
}

}  // namespace detail

// Owners and batches for `specs` on `ranks` ranks, as shard_scatter computes them; throws redist::error on
// invalid specs (see shard_scatter).
inline shard_plan plan_shards(std::span<const shard_spec> specs, int ranks,
                              const shard_options& options = {}) {
  std::vector<detail::shard_sizes> sizes;
  return detail::plan_shards("redist::plan_shards", specs, ranks, options, sizes);
}

}  // namespace redist
