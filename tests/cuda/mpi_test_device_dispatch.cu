// MPI tests on a GPU: dispatch of nested items of device tensors (cuda_tensor, cuda_space on each rank's
// stream) over host-staged MPI (ranks sharing the GPU), on the world and numbered backwards, and over NCCL at
// one rank: small and large tensors, nested lists, empty items and fewer items than ranks, through both
// overloads, must arrive with the host dispatch's structure and bytes, in at most two kernel launches on the
// root and one on a receiver. Skipped without a GPU.
#include <cuda_runtime.h>
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
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
#include "redist/dispatch.hpp"

namespace {

namespace d = redist::detail;
using redist::cuda_tensor;
using redist::dtype;
using redist::host_tensor;
using host_tree = redist::nested<host_tensor>;
using device_tree = redist::nested<cuda_tensor>;

struct gpu : redist::test::gpu_rank {
  device_tree up(const host_tree& n) const {
    if (n.is_tensor()) return device_tree(gpu_rank::up(n.tensor()));  // moved: nvcc would copy otherwise
    if (n.is_list()) {
      device_tree::list l;
      for (const auto& c : n.items()) l.push_back(up(c));
      return device_tree(std::move(l));
    }
    device_tree::fields f;
    for (const auto& x : n.named()) f.push_back({x.name, up(x.value)});
    return device_tree(std::move(f));
  }
  // Kinds, names, dtypes and shapes as text, the bytes appended tensor by tensor.
  template <class Tensor>
  void describe(const redist::nested<Tensor>& n, std::string& out, std::vector<std::byte>& bytes) const {
    if (n.is_tensor()) {
      const Tensor& t = n.tensor();
      out += std::string(redist::name(t.dtype())) + "[";
      for (const auto e : t.shape()) out += std::to_string(e) + ",";
      out += "]";
      const std::size_t at = bytes.size();
      bytes.resize(at + t.nbytes());
      sync();
      d::cuda_check(cudaMemcpy(bytes.data() + at, t.data(), t.nbytes(), cudaMemcpyDefault), "download");
      return;
    }
    out += n.is_list() ? "(" : "{";
    if (n.is_list()) {
      for (const auto& c : n.items()) describe(c, out, bytes);
    } else {
      for (const auto& f : n.named()) {
        out += f.name + "=";
        describe(f.value, out, bytes);
      }
    }
    out += n.is_list() ? ")" : "}";
  }
  bool same(const device_tree& got, const host_tree& want) const {
    std::string gs, ws;
    std::vector<std::byte> gb, wb;
    describe(got, gs, gb);
    describe(want, ws, wb);
    return gs == ws && gb == wb;
  }
};

host_tensor drawn(dtype t, std::vector<std::int64_t> shape, std::uint64_t seed) {
  host_tensor x(t, std::move(shape));
  auto bytes = x.bytes();
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::byte>(redist::test::draw(seed, i) & 0xff);
  return x;
}

// Rank r's item: empty every third rank, else small tensors beside large ones in fields and lists.
host_tree item_of(int r, std::size_t small) {
  if (r % 3 == 2) return host_tree();
  const auto seed = static_cast<std::uint64_t>(r) * 1000;
  host_tree::list smalls;
  for (std::size_t i = 0; i < small; ++i) smalls.push_back(drawn(dtype::f32, {3, 5}, seed + i));
  host_tree::fields f;
  f.push_back({"small", std::move(smalls)});
  f.push_back({"input_ids", drawn(dtype::i64, {6000 + r}, seed + 500)});
  f.push_back({"nested", host_tree::list{host_tree::fields{}, drawn(dtype::u8, {7}, seed + 501)}});
  return f;
}

// Every root, every item or fewer items than ranks, both overloads, over `comm` against the host dispatch.
template <class Comm>
bool every_root(const redist::mpi_communicator& host, const Comm& comm, const gpu& g) {
  bool ok = true;
  const int n = host.size();
  for (int root = 0; root < n; ++root) {
    for (const std::size_t small : {std::size_t{3}, std::size_t{100}}) {
      for (const bool move : {false, true}) {
        const std::size_t items =
            small == 3 ? static_cast<std::size_t>(n) : static_cast<std::size_t>(n + 1) / 2;
        std::vector<host_tree> host_items;
        if (host.rank() == root)
          for (std::size_t r = 0; r < items; ++r) host_items.push_back(item_of(static_cast<int>(r), small));
        const host_tree want = redist::dispatch(host, host_items, root);
        std::vector<device_tree> device_items;
        for (const auto& h : host_items) device_items.push_back(g.up(h));
        const redist::cuda_space space(g.stream);
        const device_tree got = move ? redist::dispatch(comm, std::move(device_items), root, {}, space)
                                     : redist::dispatch<cuda_tensor>(comm, device_items, root, {}, space);
        ok = ok && g.same(got, want) && space.launches() <= (host.rank() == root ? 2u : 1u);
      }
    }
  }
  return ok;
}

}  // namespace

TEST_CASE("dispatch of device tensors over host-staged MPI gives the host dispatch's items") {
  const gpu g;
  redist::test::over_host_staged_mpi(
      g, [&](const auto& host, const auto& comm) { return every_root(host, comm, g); });
}

TEST_CASE("dispatch of device tensors over NCCL at one rank gives the host dispatch's items") {
  const gpu g;
  redist::test::over_nccl_one_rank(
      g, [&](const auto& host, const auto& comm) { return every_root(host, comm, g); });
}
