// MPI tests of redist::shard_scatter: random specs (every dtype, shard dims 0..3, replicated, scalars,
// zero-sized, given and automatic owners) under budgets from one batch to one tensor per batch, received in
// place, in staging or both (each rank choosing alone), byte for byte against shards this file cuts element
// by element from the seed alone; on the world, a communicator numbered backwards, a split subset, a
// permuted sub-group and self_communicator; each tensor loaded once, on its owner, in spec order, with no
// other full tensor alive but those sent from their own memory (one run of the tensor, 64 KiB or more) of
// the batch loading and the one before, and such tensors held until then; shards sent in place next to
// packed and empty ones in one batch, in one message per rank (mpi_communicator) and as messages of their
// own (a communicator without send_pieces, as NCCL's); and every error on every rank, with one bad rank
// where that means something, a load failing before and on tensors sent in place, followed by a good call
// on the same communicator.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/comm/self.hpp"
#include "redist/shard.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::mpi_communicator;
using redist::shard_spec;

// A full tensor as load returns it, counting how many are alive, per spec: shard_scatter must drop each
// before the next load but those it sends from their own memory, until their batch is done. Its traits may
// claim it is not contiguous.
struct counted_tensor {
  static inline int alive = 0;
  static inline std::map<std::size_t, int> live;  // per spec index
  host_tensor t;
  std::size_t index = 0;
  bool contiguous = true;
  counted_tensor(host_tensor x, std::size_t i) : t(std::move(x)), index(i) { born(); }
  counted_tensor(counted_tensor&& o) noexcept : t(std::move(o.t)), index(o.index), contiguous(o.contiguous) {
    born();
  }
  counted_tensor(const counted_tensor&) = delete;
  counted_tensor& operator=(const counted_tensor&) = delete;
  counted_tensor& operator=(counted_tensor&&) = delete;
  ~counted_tensor() {
    --alive;
    if (--live[index] == 0) live.erase(index);
  }
  void born() {
    ++alive;
    ++live[index];
  }
};

}  // namespace

template <>
struct redist::tensor_traits<counted_tensor> {
  static constexpr memory_space space = memory_space::host;
  static void* data(counted_tensor& c) noexcept { return c.t.data(); }
  static const void* data(const counted_tensor& c) noexcept { return c.t.data(); }
  static redist::dtype dtype(const counted_tensor& c) noexcept { return c.t.dtype(); }
  static std::size_t rank(const counted_tensor& c) noexcept { return c.t.rank(); }
  static std::int64_t extent(const counted_tensor& c, std::size_t d) { return c.t.extent(d); }
  static bool is_contiguous(const counted_tensor& c) noexcept { return c.contiguous; }
};

namespace {

using redist::test::mix;

bool held_seen = false;  // whether a check_scatter saw a tensor held on this rank

std::uint64_t draw(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0) {
  return mix(mix(seed ^ a) ^ b);
}

// Byte j of full tensor i.
std::byte pattern(std::uint64_t seed, std::size_t i, std::size_t j) {
  return static_cast<std::byte>(draw(seed, i, j) & 0xFF);
}

host_tensor full_tensor(std::uint64_t seed, std::size_t i, const shard_spec& s) {
  host_tensor t(s.dtype, s.shape);
  std::span<std::byte> b = t.bytes();
  for (std::size_t j = 0; j < b.size(); ++j) b[j] = pattern(seed, i, j);
  return t;
}

// Specs every rank draws alike from the seed: every dtype, 0 to 3 dims (some zero extents), about a third
// replicated, shard dims with extents that are multiples of `ranks`, a third of the owners given, and one
// tensor of 40,000 bytes or more (above the small budgets).
std::vector<shard_spec> random_specs(std::uint64_t seed, int ranks, std::size_t count) {
  std::vector<shard_spec> specs;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t d = draw(seed, 1000 + i);
    shard_spec s;
    s.name = "layer" + std::to_string(i % 7) + ".w" + std::to_string(i);
    s.dtype = static_cast<dtype>(d % redist::dtype_count);
    const std::size_t dims = (d >> 8) % 4;
    for (std::size_t k = 0; k < dims; ++k)
      s.shape.push_back(static_cast<std::int64_t>((d >> (12 + 3 * k)) % 6));
    if (!s.shape.empty() && (d >> 30) % 3 != 0) {
      const std::size_t k = (d >> 33) % s.shape.size();
      s.shape[k] *= ranks;
      s.shard_dim = static_cast<int>(k);
    }
    if ((d >> 40) % 3 == 0) s.owner = static_cast<int>((d >> 42) % static_cast<std::uint64_t>(ranks));
    specs.push_back(std::move(s));
  }
  specs[count / 2] = {"big", dtype::bf16, {100, 200 * static_cast<std::int64_t>(ranks)}, 1, std::nullopt};
  return specs;
}

// What rank r must hold of tensor i, cut element by element: the shard's flat index to its multi-index, the
// shard dim offset by r's slice, back to the full tensor's flat index.
std::vector<std::byte> expected_bytes(std::uint64_t seed, std::size_t i, const shard_spec& s, int r,
                                      int ranks) {
  std::vector<std::int64_t> shape = s.shape;
  if (s.shard_dim) shape[static_cast<std::size_t>(*s.shard_dim)] /= ranks;
  std::size_t elements = 1;
  for (const std::int64_t e : shape) elements *= static_cast<std::size_t>(e);
  const std::size_t width = redist::size_of(s.dtype);
  std::vector<std::byte> out;
  std::vector<std::int64_t> index(shape.size());
  for (std::size_t e = 0; e < elements; ++e) {
    std::size_t rest = e;
    for (std::size_t d = shape.size(); d-- > 0;) {
      index[d] = static_cast<std::int64_t>(rest % static_cast<std::size_t>(shape[d]));
      rest /= static_cast<std::size_t>(shape[d]);
    }
    if (s.shard_dim)
      index[static_cast<std::size_t>(*s.shard_dim)] += r * shape[static_cast<std::size_t>(*s.shard_dim)];
    std::size_t flat = 0;
    for (std::size_t d = 0; d < shape.size(); ++d)
      flat = flat * static_cast<std::size_t>(s.shape[d]) + static_cast<std::size_t>(index[d]);
    for (std::size_t b = 0; b < width; ++b) out.push_back(pattern(seed, i, flat * width + b));
  }
  return out;
}

// Empty when rank r's results are exactly its shards and copies, in spec order.
std::string check_results(const std::vector<redist::named_tensor<host_tensor>>& got,
                          const std::vector<shard_spec>& specs, std::uint64_t seed, int r, int ranks) {
  if (got.size() != specs.size())
    return std::to_string(got.size()) + " results for " + std::to_string(specs.size()) + " specs";
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const shard_spec& s = specs[i];
    const host_tensor& t = got[i].tensor;
    std::vector<std::int64_t> shape = s.shape;
    if (s.shard_dim) shape[static_cast<std::size_t>(*s.shard_dim)] /= ranks;
    const std::string what = "result " + std::to_string(i) + " ('" + s.name + "')";
    if (got[i].name != s.name) return what + " is named '" + got[i].name + "'";
    if (t.dtype() != s.dtype) return what + " holds " + std::string(redist::name(t.dtype()));
    if (!std::equal(t.shape().begin(), t.shape().end(), shape.begin(), shape.end()))
      return what + " has the wrong shape";
    const std::vector<std::byte> want = expected_bytes(seed, i, s, r, ranks);
    if (!std::equal(t.bytes().begin(), t.bytes().end(), want.begin(), want.end()))
      return what + " has the wrong bytes";
  }
  return {};
}

auto loader(const std::vector<shard_spec>& specs, std::uint64_t seed) {
  return [&specs, seed](std::size_t i) { return full_tensor(seed, i, specs[i]); };
}

// Whether shard_scatter sends tensor s from its owner's memory on `ranks` ranks, so holds it until its
// batch's transfers are done: with other ranks, a shard that is one run of the full tensor (replicated, or a
// cut with only extents of 1 before its dim) of 64 KiB or more.
bool sent_in_place(const shard_spec& s, int ranks) {
  std::size_t bytes = redist::size_of(s.dtype);
  for (const std::int64_t e : s.shape) bytes *= static_cast<std::size_t>(e);
  if (s.shard_dim) {
    const auto k = static_cast<std::size_t>(*s.shard_dim);
    if (std::any_of(s.shape.begin(), s.shape.begin() + static_cast<std::ptrdiff_t>(k),
                    [](std::int64_t e) { return e != 1; }))
      return false;
    bytes /= static_cast<std::size_t>(ranks);
  }
  return ranks > 1 && bytes >= std::size_t{64} << 10;
}

// Per spec, how often this rank's load was called; whether every call came in spec order with no other full
// tensor alive but those sent in place of this batch and the one before; and whether one was held.
struct load_log {
  std::vector<int> calls;
  std::vector<std::size_t> batch;  // per spec
  std::vector<char> in_place;      // per spec: sent_in_place
  bool in_order = true;
  bool held = false;
  std::size_t last = 0;
  bool any = false;

  load_log(const std::vector<shard_spec>& specs, int ranks, std::size_t budget)
      : calls(specs.size(), 0), batch(specs.size()), in_place(specs.size()) {
    const redist::shard_plan plan = redist::plan_shards(specs, ranks, {.max_batch_bytes = budget});
    for (std::size_t b = 0; b < plan.batches(); ++b) {
      for (std::size_t i = plan.batch_starts[b]; i < plan.batch_starts[b + 1]; ++i) batch[i] = b;
    }
    for (std::size_t i = 0; i < specs.size(); ++i) in_place[i] = sent_in_place(specs[i], ranks) ? 1 : 0;
  }

  void record(std::size_t i) {
    ++calls.at(i);
    if (any && i <= last) in_order = false;
    for (const auto& [j, count] : counted_tensor::live) {
      held = true;
      if (in_place.at(j) == 0 || batch.at(j) + 1 < batch.at(i)) in_order = false;
    }
    last = i;
    any = true;
  }
};

// Every spec loaded exactly once over the communicator's ranks, given owners on themselves. Collective.
bool loaded_once(const mpi_communicator& c, const std::vector<shard_spec>& specs, const load_log& log) {
  std::vector<int> total(specs.size(), 0);
  MPI_Allreduce(log.calls.data(), total.data(), static_cast<int>(specs.size()), MPI_INT, MPI_SUM, c.native());
  bool ok = log.in_order;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    ok = ok && total[i] == 1;
    if (specs[i].owner) ok = ok && (log.calls[i] == 1) == (*specs[i].owner == c.rank());
  }
  return ok;
}

// One call with counted_tensor loads (copied into the results) and one with host_tensor loads (replicated
// ones moved in), both checked byte for byte; every rank agrees on the verdict.
template <class Comm>
void check_scatter(const Comm& c, const std::vector<shard_spec>& specs, std::uint64_t seed,
                   std::size_t budget) {
  INFO("communicator of size " << c.size() << ", rank " << c.rank() << ", " << specs.size()
                               << " specs, budget " << budget);
  const redist::shard_options options{.max_batch_bytes = budget};
  load_log log(specs, c.size(), budget);
  const auto counted = redist::shard_scatter(
      c, specs,
      [&](std::size_t i) {
        log.record(i);
        return counted_tensor(full_tensor(seed, i, specs[i]), i);
      },
      options);
  std::string problem = check_results(counted, specs, seed, c.rank(), c.size());
  CHECK_MESSAGE(problem.empty(), problem);
  CHECK(counted_tensor::alive == 0);
  CHECK(loaded_once(c, specs, log));
  held_seen = held_seen || log.held;

  // The caller's workspace, exactly as large as needed and full of garbage.
  std::vector<std::byte> workspace(redist::shard_workspace_bytes(specs, c.rank(), c.size(), options),
                                   std::byte{0xA5});
  const auto staged = redist::shard_scatter(c, specs, loader(specs, seed),
                                            {.max_batch_bytes = budget, .workspace = workspace});
  problem = check_results(staged, specs, seed, c.rank(), c.size());
  CHECK_MESSAGE(problem.empty(), problem);

  const auto moved = redist::shard_scatter(
      c, specs, [&](std::size_t i) { return full_tensor(seed, i, specs[i]); }, options);
  problem = check_results(moved, specs, seed, c.rank(), c.size());
  CHECK_MESSAGE(problem.empty(), problem);
}

// Shards sent from their owner's tensor (cut along dim 0, cut after extents of 1, replicated; 64 KiB and
// more) next to packed ones (strided, small) and empty ones, in the same batches: rank 0 owns three sent in
// place, one strided and an empty one in a row, the last rank two; the others planned.
std::vector<shard_spec> in_place_specs(int ranks) {
  const std::int64_t n = ranks;
  const std::optional<int> planned, replicated;
  return {
      {"embed", dtype::bf16, {64 * n, 600}, 0, 0},
      {"proj", dtype::f32, {8, 2200 * n}, 1, 0},
      {"table", dtype::i64, {9000}, replicated, 0},
      {"empty", dtype::f32, {0, 3 * n}, 1, 0},
      {"w2", dtype::f64, {9000 * n, 1}, 0, 0},
      {"scale", dtype::f16, {4 * n}, 0, planned},
      {"head", dtype::u8, {1, 1, 70000 * n}, 2, ranks - 1},
      {"mask", dtype::boolean, {3, 2 * n}, 1, planned},
      {"pos", dtype::bf16, {40000}, replicated, ranks - 1},
      {"none", dtype::bf16, {0}, 0, planned},
      {"ffn", dtype::bf16, {300 * n, 128}, 0, planned},
  };
}

// A communicator whose groups lack mpi_p2p_group::send_pieces, as NCCL's: each shard sent in place goes as
// a message of its own, and its receiver frames its pieces alike. shard_scatter makes no sub-group.
struct ungathered : mpi_communicator {
  using mpi_communicator::mpi_communicator;
  struct plain_group {
    redist::mpi_p2p_group g;
    void send(std::span<const std::byte> b, int peer) { g.send(b, peer); }
    void recv(std::span<std::byte> b, int peer) { g.recv(b, peer); }
    void recv_pieces(std::span<const redist::segment> pieces, int peer) { g.recv_pieces(pieces, peer); }
    redist::mpi_request finish() && { return std::move(g).finish(); }
  };
  plain_group start_group() const { return {mpi_communicator::start_group()}; }
  const ungathered* group(std::span<const int>) const { throw redist::error("ungathered: no groups"); }
};
static_assert(redist::communicator<ungathered> && !redist::detail::gathers_sends<ungathered>);
static_assert(redist::detail::gathers_sends<mpi_communicator>);

template <class Comm>
void check_budgets_on(const Comm& c, std::uint64_t seed) {
  const std::vector<shard_spec> specs = random_specs(seed, c.size(), 40);
  const std::size_t small = 256;  // many batches, and 'big' over it
  CHECK(redist::plan_shards(specs, c.size(), {.max_batch_bytes = small}).batches() >=
        (c.size() > 1 ? 4u : 1u));
  for (const std::size_t budget : {redist::shard_options{}.max_batch_bytes, small, std::size_t{0}}) {
    check_scatter(c, specs, seed, budget);
  }
}
void check_budgets(const mpi_communicator& c, std::uint64_t seed) { check_budgets_on(c, seed); }

std::vector<shard_spec> good_specs(int ranks) {
  return {{"a", dtype::f32, {2, 3 * static_cast<std::int64_t>(ranks)}, 1, std::nullopt},
          {"b", dtype::i8, {5}, std::nullopt, 0},
          {"c", dtype::bf16, {2 * static_cast<std::int64_t>(ranks), 3}, 0, ranks - 1}};
}

// shard_scatter(specs) throws on every rank with exactly `message`; then a good call on the same communicator
// works. Collective.
template <class Load>
void check_error(const mpi_communicator& c, const std::vector<shard_spec>& specs, Load load,
                 const std::string& message, std::size_t budget = redist::shard_options{}.max_batch_bytes,
                 const std::string& tail = {}) {
  std::string got = "no error";
  try {
    redist::shard_scatter(c, specs, load, {.max_batch_bytes = budget});
  } catch (const redist::error& e) {
    got = e.what();
  }
  const bool ok =
      tail.empty() ? got == message : got.rfind(message, 0) == 0 && got.find(tail) != std::string::npos;
  INFO("got: " << got);
  CHECK(redist::test::all_ranks(ok, c.native()));
  const std::vector<shard_spec> good = good_specs(c.size());
  const auto results =
      redist::shard_scatter(c, good, [&](std::size_t i) { return full_tensor(5, i, good[i]); });
  const std::string problem = check_results(results, good, 5, c.rank(), c.size());
  CHECK_MESSAGE(problem.empty(), problem);
}

}  // namespace

TEST_CASE("shard_scatter on the world: random specs, one batch to one tensor per batch") {
  REDIST_AGREED_SEED(seed);
  const mpi_communicator c(MPI_COMM_WORLD);
  check_budgets(c, seed);
}

TEST_CASE("shard_scatter stages each source's block: the workspace it asks for is enough, and exact") {
  REDIST_AGREED_SEED(seed);
  const mpi_communicator c(MPI_COMM_WORLD);
  check_budgets(c, seed ^ 6);
  // A workspace of exactly shard_workspace_bytes, on every rank, at every budget.
  const std::vector<shard_spec> specs = random_specs(seed ^ 7, c.size(), 40);
  for (const std::size_t budget :
       {redist::shard_options{}.max_batch_bytes, std::size_t{256}, std::size_t{0}}) {
    std::vector<std::byte> ws(
        redist::shard_workspace_bytes(specs, c.rank(), c.size(), {.max_batch_bytes = budget}));
    const auto results =
        redist::shard_scatter(c, specs, [&](std::size_t i) { return full_tensor(3, i, specs[i]); },
                              {.max_batch_bytes = budget, .workspace = ws});
    const std::string problem = check_results(results, specs, 3, c.rank(), c.size());
    INFO("budget " << budget << ": " << problem);
    CHECK(redist::test::all_ranks(problem.empty()));
  }
}

TEST_CASE("shard_scatter on a communicator numbered backwards, a split subset and a permuted sub-group") {
  REDIST_AGREED_SEED(seed);
  const auto reversed = redist::test::reversed_world();
  check_budgets(mpi_communicator(reversed.get()), seed ^ 1);
  const auto odd = redist::test::odd_ranks();
  if (odd.is_member()) check_budgets(mpi_communicator(odd.get()), seed ^ 2);
  // The world's upper half, in descending order.
  const mpi_communicator world(MPI_COMM_WORLD);
  std::vector<int> upper;
  for (int r = world.size() - 1; r >= world.size() / 2; --r) upper.push_back(r);
  if (const mpi_communicator* g = world.group(upper)) check_budgets(*g, seed ^ 3);
}

TEST_CASE("shard_scatter edge cases: no specs, only empty tensors, every tensor on one owner, one rank") {
  REDIST_AGREED_SEED(seed);
  const mpi_communicator c(MPI_COMM_WORLD);
  const int n = c.size();
  check_scatter(c, {}, seed, 0);
  const std::vector<shard_spec> empty = {{"e0", dtype::f64, {0, 2 * n}, 1, std::nullopt},
                                         {"e1", dtype::i16, {3, 0}, std::nullopt, std::nullopt},
                                         {"e2", dtype::u8, {0}, 0, n - 1}};
  check_scatter(c, empty, seed, 0);
  std::vector<shard_spec> on_last = random_specs(seed ^ 4, n, 12);
  for (shard_spec& s : on_last) s.owner = n - 1;
  check_scatter(c, on_last, seed ^ 4, 100);

  // self_communicator: everything is this rank's own.
  const redist::self_communicator self;
  const std::vector<shard_spec> specs = random_specs(seed ^ 5, 1, 20);
  const auto results = redist::shard_scatter(self, specs, loader(specs, seed ^ 5), {.max_batch_bytes = 64});
  const std::string problem = check_results(results, specs, seed ^ 5, 0, 1);
  CHECK_MESSAGE(problem.empty(), problem);
}

TEST_CASE("shard_scatter errors: the same redist::error on every rank, then the communicator works on") {
  const mpi_communicator c(MPI_COMM_WORLD);
  const int n = c.size();
  const int me = c.rank();
  const int bad = n - 1;  // the one bad rank, where there is one
  const std::int64_t N = n;

  std::vector<shard_spec> specs = good_specs(n);
  if (n > 1) {  // any extent divides into one shard
    specs[0].shape = {2, 3 * N + 1};
    check_error(c, specs, loader(specs, 1),
                "redist::shard_scatter: tensor 'a': dim 1 of extent " + std::to_string(3 * N + 1) +
                    " does not divide into " + std::to_string(n) +
                    " equal shards (ragged shards are not supported)");
  }

  specs = good_specs(n);
  specs[2].shard_dim = 2;
  check_error(
      c, specs, loader(specs, 1),
      "redist::shard_scatter: tensor 'c': shard dim 2 is out of range for a tensor of 2 dims, shape [" +
          std::to_string(2 * n) + ", 3]");

  specs = good_specs(n);
  specs[1].owner = n;
  check_error(c, specs, loader(specs, 1),
              "redist::shard_scatter: tensor 'b': owner " + std::to_string(n) +
                  " is out of range for a communicator of size " + std::to_string(n));

  specs = good_specs(n);
  specs[2].name = "a";
  check_error(c, specs, loader(specs, 1),
              "redist::shard_scatter: tensor name 'a' appears twice (specs 0 and 2)");

  if (n > 1) {
    // One rank's specs differ: another dtype, or a ragged extent there only, or another budget.
    specs = good_specs(n);
    if (me == bad) specs[1].dtype = dtype::u8;
    const std::string differ_prefix = "redist::shard_scatter: the ranks' calls differ in specs: ";
    const std::string differ_bad = "rank " + std::to_string(bad) + " passes specs 3 tensors of fingerprint";
    std::string got;
    try {
      redist::shard_scatter(c, specs, loader(specs, 1));
    } catch (const redist::error& e) {
      got = e.what();
    }
    INFO("got: " << got);
    CHECK(redist::test::all_ranks(got.rfind(differ_prefix, 0) == 0 &&
                                  got.find(differ_bad) != std::string::npos));

    specs = good_specs(n);
    if (me == bad) specs[0].shape = {2, 3 * N + 1};
    check_error(c, specs, loader(specs, 1),
                "redist::shard_scatter: tensor 'a': dim 1 of extent " + std::to_string(3 * N + 1) +
                    " does not divide into " + std::to_string(n) +
                    " equal shards (ragged shards are not supported) (on rank " + std::to_string(bad) +
                    ") (and the ranks' calls differ in specs: ",
                redist::shard_options{}.max_batch_bytes, "rank " + std::to_string(bad) + " passes specs");

    specs = good_specs(n);
    got.clear();
    try {
      redist::shard_scatter(c, specs, loader(specs, 1), {.max_batch_bytes = me == bad ? 7u : 8u});
    } catch (const redist::error& e) {
      got = e.what();
    }
    CHECK(redist::test::all_ranks(
        got.rfind("redist::shard_scatter: the ranks' calls differ in max_batch_bytes: ", 0) == 0 &&
        got.find("rank " + std::to_string(bad) + " passes max_batch_bytes 7") != std::string::npos));
  }

  // A workspace too small on one rank (every rank stages something only when there are two or more).
  if (n > 1) {
    specs = good_specs(n);
    std::vector<std::byte> workspace(redist::shard_workspace_bytes(specs, me, n) - (me == bad ? 1 : 0));
    const std::string expected =
        "redist::shard_scatter: the workspace of rank " + std::to_string(bad) + " holds " +
        std::to_string(redist::shard_workspace_bytes(specs, bad, n) - 1) + " bytes, less than the " +
        std::to_string(redist::shard_workspace_bytes(specs, bad, n)) + " it needs (shard_workspace_bytes)";
    std::string got = "no error";
    try {
      redist::shard_scatter(c, specs, loader(specs, 1), {.workspace = workspace});
    } catch (const redist::error& e) {
      got = e.what();
    }
    CHECK(got == expected);
    CHECK(redist::test::all_ranks(got == expected));
  }

  // Loads that fail on their owner only (the last rank owns 'c'), over several batches.
  specs = good_specs(n);
  const std::string on_bad = " (on rank " + std::to_string(bad) + ")";
  check_error(
      c, specs,
      [&](std::size_t i) -> host_tensor {
        if (i == 2) throw redist::error("disk on fire");
        return full_tensor(1, i, specs[i]);
      },
      "redist::shard_scatter: load(2) for tensor 'c' threw: disk on fire" + on_bad, 0);
  check_error(
      c, specs,
      [&](std::size_t i) -> host_tensor {
        if (i == 2) throw 42;
        return full_tensor(1, i, specs[i]);
      },
      "redist::shard_scatter: load(2) for tensor 'c' threw something that is not a std::exception" + on_bad);
  check_error(
      c, specs,
      [&](std::size_t i) {
        shard_spec s = specs[i];
        if (i == 2) s.dtype = dtype::f16;
        return full_tensor(1, i, s);
      },
      "redist::shard_scatter: load(2) returned a f16 tensor of shape [" + std::to_string(2 * n) +
          ", 3] for tensor 'c', expected bf16 [" + std::to_string(2 * n) + ", 3]" + on_bad);
  check_error(
      c, specs,
      [&](std::size_t i) {
        counted_tensor t(full_tensor(1, i, specs[i]), i);
        t.contiguous = i != 2;
        return t;
      },
      "redist::shard_scatter: load(2) returned a non-contiguous bf16 tensor of shape [" +
          std::to_string(2 * n) + ", 3] for tensor 'c', expected bf16 [" + std::to_string(2 * n) + ", 3]" +
          on_bad,
      1);
  // Two failing owners: the lowest rank's message wins (with one rank, rank 0 owns both).
  specs = good_specs(n);
  specs[0].owner = 0;
  check_error(
      c, specs,
      [&](std::size_t i) -> host_tensor {
        if (i != 1) throw redist::error("bad " + std::to_string(i));
        return full_tensor(1, i, specs[i]);
      },
      "redist::shard_scatter: load(0) for tensor 'a' threw: bad 0 (on rank 0)");
  CHECK(counted_tensor::alive == 0);
}

TEST_CASE("shard_scatter sends shards that are one run of the tensor from it, packed ones beside them") {
  REDIST_AGREED_SEED(seed);
  const mpi_communicator world(MPI_COMM_WORLD);
  const auto reversed = redist::test::reversed_world();
  const mpi_communicator back(reversed.get());
  const ungathered apart(reversed.get());
  const auto odd = redist::test::odd_ranks();
  const std::vector<shard_spec> specs = in_place_specs(world.size());
  CHECK(redist::plan_shards(specs, world.size(), {.max_batch_bytes = 0}).batches() ==
        (world.size() > 1 ? specs.size() : 1));  // alone, nothing moves
  // Rank 0 owns 'embed', 'table' and 'w2', sent in place (with other ranks): one of them is still held when
  // it loads the next tensor, in one batch or one tensor per batch.
  auto check = [&](const auto& c, std::uint64_t s, std::size_t budget) {
    held_seen = false;
    check_scatter(c, in_place_specs(c.size()), s, budget);
    CHECK(redist::test::all_ranks(c.size() == 1 || c.rank() != 0 || held_seen, c.native()));
  };
  for (const std::size_t budget :
       {redist::shard_options{}.max_batch_bytes, std::size_t{100} << 10, std::size_t{0}}) {
    check(world, seed, budget);
    check(back, seed ^ 1, budget);
    check(apart, seed ^ 2, budget);  // each shard sent in place a message of its own
    if (odd.is_member()) check(mpi_communicator(odd.get()), seed ^ 3, budget);
  }
  // The random specs, through messages of their own too.
  check_budgets_on(apart, seed ^ 4);
}

TEST_CASE("shard_scatter errors with tensors sent in place: a load failing on one or before it") {
  const mpi_communicator c(MPI_COMM_WORLD);
  const int n = c.size();
  const std::vector<shard_spec> specs = in_place_specs(n);
  const std::string on_last = " (on rank " + std::to_string(n - 1) + ")";
  for (const std::size_t budget : {redist::shard_options{}.max_batch_bytes, std::size_t{0}}) {
    // 'table' (2), rank 0's, is moved in from a host_tensor: its sends read a result allocated after the
    // failure.
    check_error(
        c, specs,
        [&](std::size_t i) -> host_tensor {
          if (i == 2) throw redist::error("bad sector");
          return full_tensor(1, i, specs[i]);
        },
        "redist::shard_scatter: load(2) for tensor 'table' threw: bad sector (on rank 0)", budget);
    // 'embed' (0) fails: rank 0's later tensors sent in place ('table', 'w2') are filler too.
    check_error(
        c, specs,
        [&](std::size_t i) {
          if (i == 0) throw redist::error("bad sector");
          return counted_tensor(full_tensor(1, i, specs[i]), i);
        },
        "redist::shard_scatter: load(0) for tensor 'embed' threw: bad sector (on rank 0)", budget);
    // 'head' (6), the last rank's, comes back another shape.
    check_error(
        c, specs,
        [&](std::size_t i) {
          shard_spec s = specs[i];
          if (i == 6) s.shape = {1, 70000 * static_cast<std::int64_t>(n)};
          return full_tensor(1, i, s);
        },
        "redist::shard_scatter: load(6) returned a u8 tensor of shape [1, " + std::to_string(70000 * n) +
            "] for tensor 'head', expected u8 [1, 1, " + std::to_string(70000 * n) + "]" + on_last,
        budget);
  }
  CHECK(counted_tensor::alive == 0);
}
