// MPI tests of redist::shard_scatter on device tensors without a GPU, on the stand-in device of
// sim_device.hpp: a model of several dtypes, cut along dim 0 and inner dims and replicated, owners given and
// planned, in one batch and in several, on the world, numbered backwards and on part of it, must give every
// rank the host shard_scatter's results byte for byte, with no copy touching host memory, one read of the
// success flags, and tables that do not grow with the rows a cut makes (never one per row); a caller's
// workspace in device memory works; a load that throws on its owner fails alike on every rank.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/shard.hpp"
#include "redist/staging/buffer.hpp"
#include "sim_device.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::mpi_communicator;
using redist::shard_spec;
using redist::test::all_ranks;
using redist::test::host_touches;
using redist::test::sim_space;
using redist::test::sim_tensor;

// A device tensor of another type than the results' (a view of a loaded checkpoint, say): what load hands
// out when replicated results cannot be moved in from it.
struct sim_loaded {
  sim_tensor t;
};

}  // namespace

template <>
struct redist::tensor_traits<sim_loaded> {
  static constexpr memory_space space = memory_space::device;
  static int device(const sim_loaded&) { return 0; }
  static const void* data(const sim_loaded& l) { return l.t.bytes.get(); }
  static void* data(sim_loaded& l) { return l.t.bytes.get(); }
  static redist::dtype dtype(const sim_loaded& l) { return l.t.type; }
  static std::size_t rank(const sim_loaded& l) { return l.t.shape.size(); }
  static std::int64_t extent(const sim_loaded& l, std::size_t d) { return l.t.shape[d]; }
};

namespace {

// A model whose inner-dim cuts make `rows` rows each (4 or 64), with the same bytes whatever rows is:
// shards of 64 KiB and more (received in place) and smaller ones (staged), owners given and planned.
std::vector<shard_spec> model(int ranks, std::int64_t rows) {
  const std::int64_t n = ranks;
  return {
      {"embed", dtype::bf16, {64 * n, 600}, 0, std::nullopt},
      {"attn.qkv", dtype::f32, {rows, 4096 / rows * 3 * n}, 1, 0},
      {"mlp.up", dtype::f16, {2, rows, 16384 / rows * n}, 2, std::nullopt},
      {"norm", dtype::f32, {300}, std::nullopt, std::nullopt},
      {"bias", dtype::i64, {9000}, std::nullopt, ranks - 1},
      {"mask", dtype::boolean, {rows, 2 * n, 256 / rows}, 1, std::nullopt},
      {"steps", dtype::i32, {4 * n}, 0, 0},
      {"scale", dtype::f64, {}, std::nullopt, std::nullopt},
  };
}

// Full tensor i's bytes, drawn from the seed alone.
host_tensor full_tensor(std::uint64_t seed, std::size_t i, const shard_spec& s) {
  host_tensor t(s.dtype, s.shape);
  std::span<std::byte> bytes = t.bytes();
  for (std::size_t j = 0; j < bytes.size(); ++j) {
    bytes[j] = static_cast<std::byte>(redist::test::mix(redist::test::mix(seed ^ i) ^ j) & 0xff);
    if (s.dtype == dtype::boolean) bytes[j] &= std::byte{1};
  }
  return t;
}

sim_tensor on_device(const host_tensor& h) {
  sim_tensor t = sim_tensor::make(h.dtype(), h.shape());
  if (t.nbytes != 0) std::memcpy(t.bytes.get(), h.data(), t.nbytes);
  return t;
}

// Empty when the device results are the host results exactly: names, dtypes, shapes and bytes.
std::string compare(const std::vector<redist::named_tensor<sim_tensor>>& got,
                    const std::vector<redist::named_tensor<host_tensor>>& want) {
  if (got.size() != want.size())
    return std::to_string(got.size()) + " results, not " + std::to_string(want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    const sim_tensor& d = got[i].tensor;
    const host_tensor& h = want[i].tensor;
    const bool same = got[i].name == want[i].name && d.type == h.dtype() &&
                      std::equal(d.shape.begin(), d.shape.end(), h.shape().begin(), h.shape().end()) &&
                      d.nbytes == h.nbytes() &&
                      (d.nbytes == 0 || std::memcmp(d.bytes.get(), h.data(), d.nbytes) == 0);
    if (!same) return "result " + std::to_string(i) + " ('" + want[i].name + "') differs";
  }
  return {};
}

// What a device call cost on this rank.
struct device_run {
  std::string problem;  // empty when its results are the host's
  std::size_t tables = 0;
  std::size_t reads = 0;
  std::size_t touches = 0;
};

// shard_scatter on the stand-in device, loading sim_tensor (replicated ones moved in) or sim_loaded
// (copied), against the host shard_scatter of the same specs.
template <class Loaded>
device_run run_device(const mpi_communicator& c, const std::vector<shard_spec>& specs, std::uint64_t seed,
                      const redist::shard_options& options) {
  const auto want =
      redist::shard_scatter(c, specs, [&](std::size_t i) { return full_tensor(seed, i, specs[i]); },
                            {.max_batch_bytes = options.max_batch_bytes});
  sim_space space;
  host_touches = 0;
  const auto got = redist::shard_scatter<sim_tensor>(
      c, specs, [&](std::size_t i) { return Loaded{on_device(full_tensor(seed, i, specs[i]))}; }, options,
      space);
  return {compare(got, want), space.count->tables, space.count->reads, host_touches};
}

// How many specs rank `me` owns and how many batches there are.
std::size_t owned_by(const std::vector<shard_spec>& specs, int ranks, int me, std::size_t budget,
                     std::size_t& batches) {
  const redist::shard_plan plan = redist::plan_shards(specs, ranks, {.max_batch_bytes = budget});
  batches = plan.batches();
  return static_cast<std::size_t>(std::count(plan.owners.begin(), plan.owners.end(), me));
}

void check_model(const mpi_communicator& c, std::uint64_t seed) {
  const int n = c.size(), me = c.rank();
  // One batch, several (128 KiB each at most), one tensor per batch.
  for (const std::size_t budget :
       {redist::shard_options{}.max_batch_bytes, std::size_t{128} << 10, std::size_t{0}}) {
    const auto few_rows = model(n, 4), many_rows = model(n, 64);
    const device_run few = run_device<sim_tensor>(c, few_rows, seed, {.max_batch_bytes = budget});
    const device_run many = run_device<sim_tensor>(c, many_rows, seed, {.max_batch_bytes = budget});
    const device_run copied = run_device<sim_loaded>(c, many_rows, seed, {.max_batch_bytes = budget});
    std::size_t batches = 0;
    const std::size_t owned = owned_by(few_rows, n, me, budget, batches);
    INFO("communicator of size " << n << ", rank " << me << ", budget " << budget << ", " << batches
                                 << " batches, " << owned << " owned: " << few.problem << many.problem
                                 << copied.problem << ", tables " << few.tables << "/" << many.tables);
    CHECK(all_ranks(few.problem.empty() && many.problem.empty() && copied.problem.empty(), c.native()));
    CHECK(all_ranks(few.touches == 0 && many.touches == 0 && copied.touches == 0, c.native()));
    // At most one table per loaded tensor and one per batch received, however many rows a cut makes.
    CHECK(all_ranks(few.tables == many.tables && many.tables <= owned + batches, c.native()));
    CHECK(all_ranks(copied.tables <= owned + batches, c.native()));
    // The success flags, read once (nothing crosses ranks on one rank).
    const std::size_t reads = n > 1 ? 1 : 0;
    CHECK(all_ranks(few.reads == reads && many.reads == reads && copied.reads == reads, c.native()));
  }
}

}  // namespace

TEST_CASE("shard_scatter on device tensors: the host results byte for byte, copies only in device memory") {
  REDIST_AGREED_SEED(seed);
  check_model(mpi_communicator(MPI_COMM_WORLD), seed);
  const auto reversed = redist::test::reversed_world();
  check_model(mpi_communicator(reversed.get()), seed ^ 1);
  const auto odd = redist::test::odd_ranks();
  if (odd.is_member()) check_model(mpi_communicator(odd.get()), seed ^ 2);
}

TEST_CASE("shard_scatter on device tensors: a caller's workspace in device memory") {
  REDIST_AGREED_SEED(seed);
  const auto reversed = redist::test::reversed_world();
  const mpi_communicator c(reversed.get());
  const auto specs = model(c.size(), 64);
  for (const std::size_t budget : {redist::shard_options{}.max_batch_bytes, std::size_t{100} << 10}) {
    sim_space space;
    redist::detail::space_buffer<sim_space> ws(space);
    const std::span<std::byte> bytes =
        ws.resize(redist::shard_workspace_bytes(specs, c.rank(), c.size(), {.max_batch_bytes = budget}));
    if (!bytes.empty()) std::memset(bytes.data(), 0xA5, bytes.size());  // garbage
    const device_run r =
        run_device<sim_tensor>(c, specs, seed, {.max_batch_bytes = budget, .workspace = bytes});
    INFO("budget " << budget << ": " << r.problem);
    CHECK(all_ranks(r.problem.empty() && r.touches == 0, c.native()));
  }
}

TEST_CASE("shard_scatter on device tensors: a load that throws on its owner is the same error everywhere") {
  const auto reversed = redist::test::reversed_world();
  const mpi_communicator c(reversed.get());
  const int n = c.size();
  const auto specs = model(n, 4);  // 'bias' (4) is the last rank's
  const redist::shard_options options{.max_batch_bytes = 100 << 10};
  auto failing = [&](auto make) {
    return [&specs, make](std::size_t i) {
      if (i == 4) throw redist::error("disk on fire");
      return make(full_tensor(7, i, specs[i]));
    };
  };
  const auto host = redist::test::outcome_of(
      [&] { redist::shard_scatter(c, specs, failing([](host_tensor t) { return t; }), options); });
  sim_space space;
  host_touches = 0;
  const auto device = redist::test::outcome_of(
      [&] { redist::shard_scatter<sim_tensor>(c, specs, failing(on_device), options, space); });
  redist::test::check_agreed_error(
      device, c,
      {"redist::shard_scatter: load(4) for tensor 'bias' threw: disk on fire (on rank " +
       std::to_string(n - 1) + ")"});
  CHECK(all_ranks(device.message == host.message && host_touches == 0, c.native()));

  // The communicator works on.
  const device_run after = run_device<sim_tensor>(c, specs, 7, options);
  CHECK(all_ranks(after.problem.empty(), c.native()));
}
