// MPI tests on a GPU: device tensors (cuda_tensor, cuda_space on each rank's stream) redistributed over
// host-staged MPI (mpi_device_communicator, several ranks sharing one GPU, each rank on GPU rank mod GPUs)
// and over NCCL at one rank per communicator, every pattern and both stagings, into a new and a reused
// result, on the world and backwards: the bytes must be the host path's exactly. Skipped without a GPU.
#include <cuda_runtime.h>
#include <doctest/doctest.h>
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../mpi/device_batches.hpp"
#include "../mpi/mpi_test.hpp"
#include "gpu_rank.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/comm/mpi/device.hpp"
#include "redist/comm/nccl.hpp"
#include "redist/comm/self.hpp"
#include "redist/core/cuda/space.cuh"
#include "redist/core/cuda/tensor.hpp"
#include "redist/redistribute.hpp"

namespace {

namespace d = redist::detail;
using redist::cuda_tensor;
using redist::test::host_batch;
using device_batch = redist::sequence_batch<cuda_tensor>;

// This rank's GPU and a stream of its own, synchronized by the test only.
struct gpu : redist::test::gpu_rank {
  device_batch up(const host_batch& b) const {
    auto out = redist::test::convert<redist::host_tensor, cuda_tensor>(
        b,
        [&](redist::dtype t, std::span<const std::int64_t> s) {
          return cuda_tensor(t, {s.begin(), s.end()}, {stream, nullptr});
        },
        [&](void* to, const void* from, std::size_t n) {
          d::cuda_check(cudaMemcpyAsync(to, from, n, cudaMemcpyHostToDevice, stream), "upload");
        });
    sync();
    return out;
  }
  host_batch down(const device_batch& b) const {
    sync();  // the call's work on the stream
    auto out = redist::test::convert<cuda_tensor, redist::host_tensor>(
        b,
        [](redist::dtype t, std::span<const std::int64_t> s) {
          return redist::host_tensor(t, std::vector<std::int64_t>(s.begin(), s.end()));
        },
        [&](void* to, const void* from, std::size_t n) {
          d::cuda_check(cudaMemcpyAsync(to, from, n, cudaMemcpyDeviceToHost, stream), "download");
        });
    sync();
    return out;
  }
};

// The host path's result and the device path's over `comm` (a communicator taking device buffers) agree.
template <class Staging, class Comm>
bool same_as_host(const redist::mpi_communicator& host, const Comm& comm, const gpu& g, std::size_t per_rank,
                  redist::plan_pattern pattern, std::size_t budget) {
  const auto local = redist::test::make_host(host.rank(), per_rank, 11);
  const auto wanted = redist::test::wanted_by(host.rank(), host.size(), per_rank);
  const redist::redistribute_options opts{
      .max_staging_bytes = budget, .allow_lossy = true, .pattern = pattern};
  const host_batch want = redist::redistribute<Staging>(host, local, wanted, opts);
  const redist::cuda_space space(g.stream);
  const device_batch dev = g.up(local);
  const device_batch got = redist::redistribute<Staging>(comm, dev, wanted, opts, space);
  device_batch reused;
  redist::redistribute_into<Staging>(comm, dev, wanted, reused, opts, space);
  redist::redistribute_into<Staging>(comm, dev, wanted, reused, opts, space);
  return redist::test::same(g.down(got), want) && redist::test::same(g.down(reused), want);
}

}  // namespace

TEST_CASE("device tensors over host-staged MPI: every pattern and staging gives the host path's bytes") {
  const gpu g;
  for (const bool backwards : {false, true}) {
    auto owned = backwards ? redist::test::reversed_world() : redist::test::split_world(true);
    const redist::mpi_communicator host(owned.get());
    for (const std::size_t staging : {std::size_t{64} << 20, std::size_t{4096}}) {
      const redist::mpi_device_communicator comm(host, g.stream, {.staging_bytes = staging});
      for (const auto pattern : {redist::plan_pattern::one_hop, redist::plan_pattern::gather_scatter,
                                 redist::plan_pattern::broadcast}) {
        CAPTURE(backwards);
        CAPTURE(staging);
        CAPTURE(static_cast<int>(pattern));
        const bool bytes = same_as_host<redist::byte_staging>(host, comm, g, 40, pattern, 256 << 20);
        const bool f32 = same_as_host<redist::float32_staging>(host, comm, g, 40, pattern, 256 << 20);
        const bool rounds = same_as_host<redist::byte_staging>(host, comm, g, 40, pattern, 2048);
        CHECK(redist::test::all_ranks(bytes && f32 && rounds));
      }
    }
  }
}

TEST_CASE("device tensors over NCCL at one rank: every pattern and staging gives the host path's bytes") {
  const gpu g;
  // One NCCL communicator per rank (NCCL refuses two ranks of one communicator on a GPU; separate
  // one-rank communicators may share it).
  const redist::self_communicator self;
  const redist::nccl_communicator comm = redist::nccl_communicator::create(self, g.device, g.stream);
  const redist::mpi_communicator host(MPI_COMM_SELF);
  bool ok = true;
  for (const auto pattern : {redist::plan_pattern::one_hop, redist::plan_pattern::gather_scatter,
                             redist::plan_pattern::broadcast}) {
    ok = ok && same_as_host<redist::byte_staging>(host, comm, g, 40, pattern, 256 << 20);
    ok = ok && same_as_host<redist::float32_staging>(host, comm, g, 40, pattern, 2048);
  }
  CHECK(redist::test::all_ranks(ok));
}
