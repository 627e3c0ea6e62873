// MPI tests on a GPU: shard_scatter of device tensors (cuda_tensor results, cuda_space on each rank's
// stream) over host-staged MPI (ranks sharing the GPU), on the world and numbered backwards, and over NCCL at
// one rank: a model of several dtypes cut on dim 0 and inner dims and replicated, in one batch and several,
// loaded as cuda_tensor (allocated inside load, on the call's stream) or as views of a device checkpoint,
// into the call's staging or a device workspace, must give every rank the host shard_scatter's results
// byte for byte, in at most one launch per loaded tensor and one per batch. Skipped without a GPU.
#include <cuda_runtime.h>
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "../mpi/mpi_test.hpp"
#include "../unit/splitmix.hpp"
#include "gpu_rank.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/comm/mpi/device.hpp"
#include "redist/comm/nccl.hpp"
#include "redist/comm/self.hpp"
#include "redist/core/cuda/space.cuh"
#include "redist/core/cuda/tensor.hpp"
#include "redist/shard.hpp"
#include "redist/staging/buffer.hpp"

namespace {

namespace d = redist::detail;
using redist::cuda_tensor;
using redist::dtype;
using redist::host_tensor;
using redist::shard_spec;

struct gpu : redist::test::gpu_rank {
  // h's bytes into t, on the stream (pageable h is staged before the copy returns).
  void upload(cuda_tensor& t, const host_tensor& h) const {
    d::cuda_check(cudaMemcpyAsync(t.data(), h.data(), h.nbytes(), cudaMemcpyHostToDevice, stream), "upload");
  }
  bool same(const std::vector<redist::named_tensor<cuda_tensor>>& got,
            const std::vector<redist::named_tensor<host_tensor>>& want) const {
    sync();  // the call's work on the stream
    if (got.size() != want.size()) return false;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const cuda_tensor& t = got[i].tensor;
      const host_tensor& h = want[i].tensor;
      std::vector<std::byte> bytes(t.nbytes());
      d::cuda_check(cudaMemcpy(bytes.data(), t.data(), t.nbytes(), cudaMemcpyDeviceToHost), "download");
      const auto hb = h.bytes();
      if (got[i].name != want[i].name || t.dtype() != h.dtype() ||
          !std::equal(t.shape().begin(), t.shape().end(), h.shape().begin(), h.shape().end()) ||
          !std::equal(bytes.begin(), bytes.end(), hb.begin(), hb.end()))
        return false;
    }
    return true;
  }
};

// The model of the stand-in device test: shards in place and staged, owners given and planned.
std::vector<shard_spec> model(int ranks) {
  const std::int64_t n = ranks;
  return {
      {"embed", dtype::bf16, {64 * n, 600}, 0, std::nullopt},
      {"attn.qkv", dtype::f32, {64, 64 * 3 * n}, 1, 0},
      {"mlp.up", dtype::f16, {2, 64, 256 * n}, 2, std::nullopt},
      {"norm", dtype::f32, {300}, std::nullopt, std::nullopt},
      {"bias", dtype::i64, {9000}, std::nullopt, ranks - 1},
      {"mask", dtype::boolean, {64, 2 * n, 4}, 1, std::nullopt},
      {"scale", dtype::f64, {}, std::nullopt, std::nullopt},
  };
}

host_tensor full_tensor(std::size_t i, const shard_spec& s) {
  host_tensor t(s.dtype, s.shape);
  auto bytes = t.bytes();
  for (std::size_t j = 0; j < bytes.size(); ++j) {
    bytes[j] = static_cast<std::byte>(redist::test::mix(redist::test::mix(i) ^ j) & 0xff);
    if (s.dtype == dtype::boolean) bytes[j] &= std::byte{1};
  }
  return t;
}

// Both budgets, both kinds of load, the call's staging and a device workspace, over `comm` against the host
// shard_scatter.
template <class Comm>
bool same_as_host(const redist::mpi_communicator& host, const Comm& comm, const gpu& g) {
  bool ok = true;
  const auto specs = model(host.size());
  std::vector<cuda_tensor> checkpoint;  // what the views load
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const host_tensor h = full_tensor(i, specs[i]);
    checkpoint.emplace_back(h.dtype(), std::vector<std::int64_t>(h.shape().begin(), h.shape().end()),
                            redist::cuda_allocation{g.stream, nullptr});
    g.upload(checkpoint.back(), h);
  }
  g.sync();
  for (const std::size_t budget : {redist::shard_options{}.max_batch_bytes, std::size_t{128} << 10}) {
    const auto want = redist::shard_scatter(
        host, specs, [&](std::size_t i) { return full_tensor(i, specs[i]); }, {.max_batch_bytes = budget});
    const redist::shard_plan plan = redist::plan_shards(specs, host.size(), {.max_batch_bytes = budget});
    const auto owned =
        static_cast<std::size_t>(std::count(plan.owners.begin(), plan.owners.end(), host.rank()));
    const redist::cuda_space space(g.stream);
    d::space_buffer<redist::cuda_space> ws(space);
    const std::span<std::byte> workspace = ws.resize(
        redist::shard_workspace_bytes(specs, host.rank(), host.size(), {.max_batch_bytes = budget}));
    for (const bool own_staging : {true, false}) {
      const redist::shard_options options{.max_batch_bytes = budget,
                                          .workspace = own_staging ? std::span<std::byte>() : workspace};
      const std::size_t before = space.launches();
      const auto loaded = redist::shard_scatter<cuda_tensor>(
          comm, specs,
          [&](std::size_t i) {
            const host_tensor h = full_tensor(i, specs[i]);
            cuda_tensor t(h.dtype(), std::vector<std::int64_t>(h.shape().begin(), h.shape().end()));
            g.upload(t, h);
            return t;
          },
          options, space);
      ok = ok && g.same(loaded, want) && space.launches() - before <= owned + plan.batches();
      const auto viewed = redist::shard_scatter<cuda_tensor>(
          comm, specs, [&](std::size_t i) { return redist::cuda_tensor_view(checkpoint[i]); }, options,
          space);
      ok = ok && g.same(viewed, want);
    }
  }
  return ok;
}

}  // namespace

TEST_CASE("shard_scatter of device tensors over host-staged MPI gives the host results") {
  const gpu g;
  redist::test::over_host_staged_mpi(
      g, [&](const auto& host, const auto& comm) { return same_as_host(host, comm, g); });
}

TEST_CASE("shard_scatter of device tensors over NCCL at one rank gives the host results") {
  const gpu g;
  redist::test::over_nccl_one_rank(
      g, [&](const auto& host, const auto& comm) { return same_as_host(host, comm, g); });
}
