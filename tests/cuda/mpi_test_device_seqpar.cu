// MPI tests on a GPU: seqpar on device tensors (cuda_tensor, cuda_space on each rank's stream) over
// host-staged MPI (ranks sharing the GPU) and over NCCL at one rank per communicator: the all-to-all family
// with packing, padding and cutting, a kept space_workspace, slicing, gathering, and the rotating broadcast
// with use() on a second stream; every result must be the host op's bytes. Skipped without a GPU.
#include <cuda_runtime.h>
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "../unit/splitmix.hpp"
#include "gpu_rank.hpp"
#include "redist/core/cuda/space.cuh"
#include "redist/core/cuda/tensor.hpp"
#include "redist/seqpar.hpp"

namespace {

namespace d = redist::detail;
namespace sp = redist::seqpar;
using redist::cuda_tensor;
using redist::dtype;
using redist::host_tensor;

// The rank's GPU with a second stream, the one use() of the rotating broadcast queues its work on.
struct gpu : redist::test::gpu_rank {
  cudaStream_t use_stream{};
  gpu() { d::cuda_check(cudaStreamCreateWithFlags(&use_stream, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~gpu() { cudaStreamDestroy(use_stream); }
};

host_tensor random_tensor(dtype t, std::vector<std::int64_t> shape, std::uint64_t seed) {
  host_tensor x(t, shape);
  auto bytes = x.bytes();
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::byte>(redist::test::draw(seed, i) & 0xff);
  return x;
}

host_tensor copy_of(const host_tensor& h) {
  host_tensor c(h.dtype(), {h.shape().begin(), h.shape().end()});
  std::ranges::copy(h.bytes(), c.bytes().begin());
  return c;
}

bool same(const host_tensor& a, const host_tensor& b) {
  return a.dtype() == b.dtype() && std::ranges::equal(a.shape(), b.shape()) &&
         std::ranges::equal(a.bytes(), b.bytes());
}

// Every op over `comm` (device buffers) against the host op over `host` (the same ranks).
template <class Comm>
bool every_op(const redist::mpi_communicator& host, const Comm& comm, const gpu& g) {
  const redist::cuda_space space(g.stream);
  const std::int64_t P = host.size();
  const auto seed = static_cast<std::uint64_t>(host.rank()) + 5;
  bool ok = true;
  const auto check = [&](const host_tensor& want, const cuda_tensor& got) {
    ok = ok && same(want, g.down(got));
  };
  const host_tensor x = random_tensor(dtype::bf16, {6, 2 * P, 40}, seed);
  const cuda_tensor dx = g.up(x);
  check(sp::all_to_all(host, x, 1, 2), sp::all_to_all(comm, dx, 1, 2, nullptr, space));
  check(sp::all_to_all(host, x, 1, 0), sp::all_to_all(comm, dx, 1, 0, nullptr, space));
  redist::space_workspace<redist::cuda_space> ws(space);
  cuda_tensor out(dtype::bf16, {6, 2, 40 * P}, {g.stream, nullptr});
  for (int i = 0; i < 2; ++i) {
    sp::all_to_all_into(comm, dx, 1, 2, out, &ws, space);
    check(sp::all_to_all(host, x, 1, 2), out);
  }
  const host_tensor seq = random_tensor(dtype::f32, {3, 2 * P + 1, 8}, seed + 1);
  check(sp::slice_inputs(host, seq, 1), sp::slice_inputs(comm, g.up(seq), 1, space));
  const host_tensor slice = sp::slice_inputs(host, seq, 1);
  check(sp::gather_outputs(host, slice, 1, 2 * P + 1),
        sp::gather_outputs(comm, g.up(slice), 1, 2 * P + 1, space));
  const host_tensor heads = random_tensor(dtype::i8, {5, 2 * P, 16}, seed + 2);
  check(sp::gather_heads_scatter_seq(host, heads, 1, 0),
        sp::gather_heads_scatter_seq(comm, g.up(heads), 1, 0, nullptr, space));
  const host_tensor qkv = random_tensor(dtype::f64, {7, 3 * 4 * P}, seed + 3);
  check(sp::gather_seq_scatter_heads_qkv(host, qkv, 0),
        sp::gather_seq_scatter_heads_qkv(comm, g.up(qkv), 0, std::nullopt, nullptr, space));

  // The rotating broadcast: each rank's tree of two tensors, used on a second stream.
  using host_tree = redist::nested<host_tensor>;
  using device_tree = redist::nested<cuda_tensor>;
  const host_tensor a = random_tensor(dtype::i32, {host.rank() + 1, 3}, seed + 4);
  const host_tensor b = random_tensor(dtype::u8, {100 + host.rank()}, seed + 5);
  host_tree::list host_items;
  host_items.emplace_back(copy_of(a));
  host_items.emplace_back(copy_of(b));
  device_tree::list device_items;
  device_items.emplace_back(g.up(a));
  device_items.emplace_back(g.up(b));
  const host_tree mine(std::move(host_items));
  const device_tree dmine(std::move(device_items));
  std::vector<host_tensor> want, got;
  sp::rotating_broadcast(host, mine, [&](int, const host_tree& t) {
    t.for_each_tensor([&](const host_tensor& h) { want.push_back(copy_of(h)); });
  });
  sp::rotating_broadcast(
      comm, dmine,
      [&](int, const device_tree& t) {
        t.for_each_tensor([&](const cuda_tensor& h) { got.push_back(g.down(h, g.use_stream)); });
      },
      space, redist::cuda_space(g.use_stream));
  ok = ok && want.size() == got.size();
  for (std::size_t i = 0; ok && i < want.size(); ++i) ok = same(want[i], got[i]);
  return ok;
}

}  // namespace

TEST_CASE("seqpar on device tensors over host-staged MPI gives the host op's bytes") {
  const gpu g;
  redist::test::over_host_staged_mpi(
      g, [&](const auto& host, const auto& comm) { return every_op(host, comm, g); });
}

TEST_CASE("seqpar on device tensors over NCCL at one rank gives the host op's bytes") {
  const gpu g;
  redist::test::over_nccl_one_rank(
      g, [&](const auto& host, const auto& comm) { return every_op(host, comm, g); });
}
