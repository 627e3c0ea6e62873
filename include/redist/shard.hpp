// redist::shard_scatter: tensor-parallel weight loading. Owners load full tensors one at a time, slice each
// into one shard per rank and every rank ends with its shard of each sharded tensor and a copy of each
// replicated one, batch by batch, one all-to-all per batch; plan_shards is its pure plan (owners, batches).
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/comm/communicator.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/tensor_traits.hpp"
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

// A result of shard_scatter: a tensor's name and this rank's shard (or copy) of it.
template <class Tensor>
struct named_tensor {
  std::string name;
  Tensor tensor;
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

// shard_scatter's description for its agreement: the specs (as a count and a fingerprint of every name,
// dtype, shape, shard dim and owner) and the batch budget, everything the plan depends on.
inline call_description describe_shard_call(const char* who, std::span<const shard_spec> specs,
                                            const shard_options& options) {
  fingerprint h;
  for (const shard_spec& s : specs) {
    h.add(s.name).add(static_cast<std::uint64_t>(s.dtype)).add_all(s.shape);
    h.add(s.shard_dim ? static_cast<std::uint64_t>(static_cast<std::uint32_t>(*s.shard_dim)) : ~0ull);
    h.add(s.owner ? static_cast<std::uint64_t>(static_cast<std::uint32_t>(*s.owner)) : ~0ull);
  }
  return call_description()
      .add("op", who)
      .add("specs", str(specs.size(), " tensors of fingerprint ", h.value()))
      .add("max_batch_bytes", options.max_batch_bytes);
}

// Copies shard p of a tensor cut along `dim` into to[p] for every p: outer blocks of the dims before `dim`,
// each holding one contiguous run per rank.
inline void slice_shards(const std::byte* from, const shard_spec& s, std::size_t n,
                         std::span<std::byte* const> to) {
  const auto k = static_cast<std::size_t>(*s.shard_dim);
  std::size_t outer = 1, inner = size_of(s.dtype);
  for (std::size_t d = 0; d < k; ++d) outer *= static_cast<std::size_t>(s.shape[d]);
  for (std::size_t d = k + 1; d < s.shape.size(); ++d) inner *= static_cast<std::size_t>(s.shape[d]);
  const std::size_t run = static_cast<std::size_t>(s.shape[k]) / n * inner;
  if (run == 0) return;
  for (std::size_t i = 0; i < outer; ++i, from += run * n) {
    for (std::size_t p = 0; p < n; ++p) host_space::copy(to[p] + i * run, from + p * run, run);
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
// over its pieces by the transport); smaller ones land in staging and are copied out after the wait. In place
// saves a copy, but Open MPI 4.1 moves a derived datatype through its copy-in/copy-out pipeline, not the
// single copy of a contiguous message, so small pieces are cheaper staged. bench_shard at 2 ranks, 316 MB
// model: 28-34 ms with large shards in place, 40-43 ms with every piece staged.
inline constexpr std::size_t shard_direct_min = std::size_t{64} << 10;

// A piece of what a rank receives from one owner in a batch: a tensor's shard (or copy), or the flag.
struct shard_piece {
  static constexpr std::size_t flag = SIZE_MAX;    // spec: the success flag
  static constexpr std::size_t direct = SIZE_MAX;  // staged: received into its result
  std::size_t spec = 0;
  std::size_t bytes = 0;
  std::size_t staged = direct;  // else its offset in the batch's receive staging
};

// Within a batch, the block from an owner to another rank holds the owner's tensors of the batch in spec
// order (each a shard or the whole), so an owner sends every other rank as many bytes and every rank knows
// what arrives from whom. The last batch adds a success flag after each block.
struct shard_layout {
  std::vector<std::size_t> send_counts, send_displs;
  std::size_t block = 0;       // bytes of tensors in each block this rank sends
  std::size_t send_bytes = 0;  // this rank's send staging
  std::size_t staged = 0;      // this rank's receive staging: its pieces under shard_direct_min
  std::vector<std::vector<shard_piece>> from;  // per source rank, what arrives, in order
  bool moves = false;  // whether the batch is exchanged: some bytes cross ranks, or it is the last
};

// Batch b's layout on rank `mine` of n.
inline void lay_out(const shard_plan& plan, std::span<const shard_sizes> sizes, std::size_t b,
                    std::size_t mine, std::size_t n, shard_layout& l) {
  const bool last = b + 1 == plan.batches();
  l.block = l.staged = 0;
  l.moves = last && n > 1;
  l.from.resize(n);
  for (auto& pieces : l.from) pieces.clear();
  for (std::size_t i = plan.batch_starts[b]; i < plan.batch_starts[b + 1]; ++i) {
    const auto o = static_cast<std::size_t>(plan.owners[i]);
    l.moves = l.moves || sizes[i].sent != 0;
    if (o == mine) {
      l.block += sizes[i].per_rank;
    } else if (sizes[i].per_rank != 0) {
      l.from[o].push_back({i, sizes[i].per_rank});
    }
  }
  for (std::size_t o = 0; o < n; ++o) {
    if (last && o != mine) l.from[o].push_back({shard_piece::flag, 1});
    for (shard_piece& piece : l.from[o]) {
      if (piece.bytes >= shard_direct_min) continue;
      piece.staged = l.staged;
      l.staged += piece.bytes;
    }
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

// Staging bytes on rank `mine`: send for even and odd batches, then receive (the pieces under
// shard_direct_min) for even and odd batches; the
// largest batch of each parity, as two are in flight at once.
inline std::array<std::size_t, 4> staging_bytes(const shard_plan& plan, std::span<const shard_sizes> sizes,
                                                std::size_t mine, std::size_t n) {
  std::array<std::size_t, 4> need{};
  shard_layout l;
  for (std::size_t b = 0; b < plan.batches(); ++b) {
    lay_out(plan, sizes, b, mine, n, l);
    need[b % 2] = std::max(need[b % 2], l.send_bytes);
    need[2 + b % 2] = std::max(need[2 + b % 2], l.staged);
  }
  return need;
}

}  // namespace detail

// Owners and batches for `specs` on `ranks` ranks, as shard_scatter computes them; throws redist::error on
// invalid specs (see shard_scatter).
inline shard_plan plan_shards(std::span<const shard_spec> specs, int ranks,
                              const shard_options& options = {}) {
  std::vector<detail::shard_sizes> sizes;
  return detail::plan_shards("redist::plan_shards", specs, ranks, options, sizes);
}

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
  const auto need =
      detail::staging_bytes(plan, sizes, static_cast<std::size_t>(rank), static_cast<std::size_t>(ranks));
  return need[0] + need[1] + need[2] + need[3];
}

// What shard_scatter calls on a tensor's owner: load(i) returns the full tensor of spec i, by value.
template <class Load>
concept shard_loader = std::invocable<Load&, std::size_t> &&
    tensor_like<std::remove_cvref_t<std::invoke_result_t<Load&, std::size_t>>>;

namespace detail {

// One shard_scatter call: prepare() plans, checks and allocates, run() moves the batches, take() hands the
// results over.
template <class Tensor, class Comm, class Load>
class shard_run {
 public:
  using loaded = std::remove_cvref_t<std::invoke_result_t<Load&, std::size_t>>;
  static constexpr const char* who = "redist::shard_scatter";

  shard_run(const Comm& comm, std::span<const shard_spec> specs, Load& load, const shard_options& options)
      : comm_(comm),
        specs_(specs),
        load_(load),
        options_(options),
        me_(comm.rank()),
        n_(static_cast<std::size_t>(comm.size())),
        mine_(static_cast<std::size_t>(comm.rank())) {}

  // Everything that can fail before data moves, agreed with the specs and the budget in one allreduce.
  void prepare() {
    problem_ = problem_of([&] {
      allocating(who, me_, "its results and staging", [&] {
        plan_ = plan_shards(who, specs_, comm_.size(), options_, sizes_);
        allocate();
      });
    });
    agree(comm_, who, problem_, describe_shard_call(who, specs_, options_));
  }

  // Packs batch b (loading its tensors) and starts it, then completes and unpacks batch b - 1. A load
  // failure is agreed at the end: every rank saw every rank's success flag in the last batch (or is alone),
  // so all of them call agree or none does.
  void run() {
    const std::size_t batches = plan_.batches();
    for (std::size_t b = 0; b < batches; ++b) {
      start(b);
      if (b > 0) finish(b - 1);
    }
    if (batches > 0) finish(batches - 1);
    if (peer_failed_ || !problem_.empty()) agree(comm_, who, problem_);
  }

  std::vector<named_tensor<Tensor>> take() {
    for (std::size_t i = 0; i < specs_.size(); ++i) out_.push_back({specs_[i].name, std::move(*results_[i])});
    return std::move(out_);
  }

 private:
  bool whole(std::size_t i) const noexcept { return !specs_[i].shard_dim || n_ == 1; }
  bool moved_in(std::size_t i) const noexcept {  // a result taken over from load's tensor, not allocated
    return std::is_same_v<loaded, Tensor> && plan_.owners[i] == me_ && whole(i);
  }
  std::byte* result_data(std::size_t i) {
    return static_cast<std::byte*>(tensor_traits<Tensor>::data(*results_[i]));
  }

  // Staging for the two batches in flight, from the caller's workspace or allocated, and every result but
  // those taken over from load.
  void allocate() {
    out_.reserve(specs_.size());
    const std::array<std::size_t, 4> need = staging_bytes(plan_, sizes_, mine_, n_);
    const std::size_t total = need[0] + need[1] + need[2] + need[3];
    std::span<std::byte> space = options_.workspace;
    if (space.empty()) {
      owned_ = host_tensor::uninitialized(dtype::u8, {static_cast<std::int64_t>(total)});
      space = owned_.bytes();
    } else if (space.size() < total) {
      fail(who, ": the workspace of rank ", me_, " holds ", space.size(), " bytes, less than the ", total,
           " it needs (shard_workspace_bytes)");
    }
    for (std::size_t slot = 0, at = 0; slot < 2; ++slot) {
      send_[slot] = space.subspan(at, need[slot]);
      recv_[slot] = space.subspan(at + need[slot], need[2 + slot]);
      at += need[slot] + need[2 + slot];
    }
    results_.resize(specs_.size());
    std::vector<std::int64_t> shape;
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      if (moved_in(i)) continue;
      shape = specs_[i].shape;
      if (!whole(i)) shape[static_cast<std::size_t>(*specs_[i].shard_dim)] /= static_cast<std::int64_t>(n_);
      results_[i].emplace(tensor_traits<Tensor>::allocate(specs_[i].dtype, shape));
    }
  }

  void start(std::size_t b) {
    const std::size_t slot = b % 2;
    shard_layout& l = layouts_[slot];
    lay_out(plan_, sizes_, b, mine_, n_, l);
    std::byte* send = send_[slot].data();
    std::size_t at = 0;  // within each block
    for (std::size_t i = plan_.batch_starts[b]; i < plan_.batch_starts[b + 1]; ++i) {
      if (plan_.owners[i] != me_) continue;
      for (std::size_t p = 0; p < n_; ++p) {
        if (p != mine_) to_[p] = send + l.send_displs[p] + at;
      }
      if (problem_.empty()) load_and_slice(i);  // after a failure: filler, the result is thrown away
      at += sizes_[i].per_rank;
    }
    if (b + 1 == plan_.batches()) {
      for (std::size_t p = 0; p < n_; ++p) {
        if (p != mine_) send[l.send_displs[p] + l.block] = problem_.empty() ? std::byte{0} : std::byte{1};
      }
    }
    if (l.moves) post(slot);
  }

  // Starts the exchange of the batch packed in slot, one group of point-to-point transfers: one block to each
  // other rank, and from each one message spread over its pieces, large ones in their results, small ones in
  // staging (in a row, merged).
  void post(std::size_t slot) {
    const shard_layout& l = layouts_[slot];
    auto g = comm_.start_group();
    for (std::size_t k = 1; k < n_; ++k) {
      const std::size_t to = (mine_ + k) % n_, from = (mine_ + n_ - k) % n_;
      g.send(send_[slot].subspan(l.send_displs[to], l.send_counts[to]), static_cast<int>(to));
      recv_pieces_.clear();
      for (const shard_piece& piece : l.from[from]) {
        std::byte* const at = piece.staged == shard_piece::direct ? destination(piece, from)
                                                                  : recv_[slot].data() + piece.staged;
        append_piece(recv_pieces_, segment{at, piece.bytes});
      }
      g.recv_pieces(recv_pieces_, static_cast<int>(from));
    }
    in_flight_[slot].emplace(std::move(g).finish());
  }

  // Where a piece from rank `from` belongs: its result, or the success flag from that rank.
  std::byte* destination(const shard_piece& piece, std::size_t from) {
    return piece.spec == shard_piece::flag ? &flags_[from] : result_data(piece.spec);
  }

  // Loads tensor i, checks it, slices it and drops it; what load throws becomes this rank's problem.
  void load_and_slice(std::size_t i) {
    const shard_spec& s = specs_[i];
    try {
      loaded full = load_(i);
      problem_ = check_loaded(full, s, i);
      if (problem_.empty()) slice(i, full);
    } catch (const std::exception& e) {
      problem_ = std::string(who) + ": load(" + std::to_string(i) + ") for tensor '" + s.name +
                 "' threw: " + e.what();
    } catch (...) {
      problem_ = std::string(who) + ": load(" + std::to_string(i) + ") for tensor '" + s.name +
                 "' threw something that is not a std::exception";
    }
    if (!problem_.empty()) problem_ += " (on rank " + std::to_string(me_) + ")";
  }

  // Copies tensor i's shard for every other rank p to to_[p] and its own into its result (a replicated
  // tensor whole to each, and moved into the result when it is a Tensor).
  void slice(std::size_t i, loaded& full) {
    const auto* from = static_cast<const std::byte*>(tensor_traits<loaded>::data(std::as_const(full)));
    if (!whole(i)) {
      to_[mine_] = result_data(i);
      slice_shards(from, specs_[i], n_, to_);
      return;
    }
    for (std::size_t p = 0; p < n_; ++p) {
      if (p != mine_) host_space::copy(to_[p], from, sizes_[i].bytes);
    }
    if constexpr (std::is_same_v<loaded, Tensor>) {
      results_[i].emplace(std::move(full));
    } else {
      host_space::copy(result_data(i), from, sizes_[i].bytes);
    }
  }

  void finish(std::size_t b) {
    const std::size_t slot = b % 2;
    const shard_layout& l = layouts_[slot];
    if (!l.moves) return;
    in_flight_[slot]->wait();
    in_flight_[slot].reset();
    for (std::size_t o = 0; o < n_; ++o)
      for (const shard_piece& piece : l.from[o])
        if (piece.staged != shard_piece::direct)
          host_space::copy(destination(piece, o), recv_[slot].data() + piece.staged, piece.bytes);
    if (b + 1 == plan_.batches()) {
      for (std::size_t o = 0; o < n_; ++o) peer_failed_ = peer_failed_ || flags_[o] != std::byte{0};
    }
  }

  const Comm& comm_;
  std::span<const shard_spec> specs_;
  Load& load_;
  shard_options options_;
  int me_;
  std::size_t n_, mine_;
  shard_plan plan_;
  std::vector<shard_sizes> sizes_;
  std::vector<std::optional<Tensor>> results_;
  std::vector<named_tensor<Tensor>> out_;
  host_tensor owned_;                       // staging when the caller gives no workspace
  std::span<std::byte> send_[2], recv_[2];  // staging, per batch parity
  shard_layout layouts_[2];
  std::vector<std::byte*> to_ = std::vector<std::byte*>(n_);   // where the shards for each rank go
  std::vector<segment> recv_pieces_;                           // one source's, while its receive is posted
  std::vector<std::byte> flags_ = std::vector<std::byte>(n_);  // each rank's success flag (own: 0)
  std::string problem_;
  bool peer_failed_ = false;
  std::optional<typename Comm::request> in_flight_[2];  // declared last, destroyed first: completes before
                                                        // staging goes
};

}  // namespace detail

// Tensor-parallel weight loading. Every rank passes the same specs; the owner of spec i (given, or chosen by
// plan_shards to balance bytes) supplies its full tensor through load(i), called there only, once, when i's
// batch is packed, and dropped as soon as it is sliced: a rank holds one full tensor at a time, plus the
// staging of two batches (shard_options: the caller's workspace, or allocated for the call). Returns, in
// spec order, this rank's shard of each sharded tensor (the spec's shape with the shard dim divided by
// size(); rank r holds the r-th slice) and a copy of each replicated one, in the spec's dtype (never
// converted). Each result is allocated once; a replicated tensor this rank owns is moved from load's when
// that is a Tensor. load may return any host tensor_like type by value (a host_tensor_view of a
// memory-mapped file works).
//
// Communication: one allreduce checks the specs; then per batch one group of point-to-point transfers (and
// its wait) moves every owner's packed shards at once, and batch b + 1 is loaded and packed while batch b
// moves (as far as the transport moves data by itself: Open MPI 4.1 between the processes of one node copies
// a large message inside MPI calls, so there the batches' copies take turns: at 2 ranks, 1 or 20 batches of a
// 316 MB model took the same time; the batch size then bounds the staging memory). A batch in which no byte
// crosses ranks is not exchanged, unless it is the last, which also carries every rank's success flag. A
// replicated tensor travels as size() - 1 copies from its owner (keep large tensors sharded). Each rank
// receives each source's block as one message, its shards (or copies) of 64 KiB or more straight into its
// results; smaller ones land in staging and are copied once more.
//
// Errors, the same redist::error on every rank, before any data moves: specs or budgets that differ between
// ranks; invalid specs (duplicate names, negative extents, sizes that overflow, shard dims out of range or
// whose extent does not divide by size(), owners out of range); a workspace too small, staging or results
// that cannot be allocated. A load that throws (its text becomes the message) or returns a tensor unlike its
// spec fails on its owner only, while batches move: that rank loads nothing more and sends filler, and after
// the last batch every rank throws the lowest failing rank's message. Nothing is returned then, and the
// communicator stays usable.
template <allocatable_tensor Tensor = host_tensor, communicator Comm, shard_loader Load>
std::vector<named_tensor<Tensor>> shard_scatter(const Comm& comm, std::span<const shard_spec> specs,
                                                Load&& load, const shard_options& options = {}) {
  using run_type = detail::shard_run<Tensor, Comm, std::remove_reference_t<Load>>;
  static_assert(tensor_space<Tensor> == memory_space::host &&
                    tensor_space<typename run_type::loaded> == memory_space::host,
                "redist::shard_scatter: host tensors only (the owner slices and packs in host memory)");
  run_type run(comm, specs, load, options);
  run.prepare();
  run.run();
  return run.take();
}

}  // namespace redist
