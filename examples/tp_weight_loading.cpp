// Tensor-parallel weight loading with redist::shard_scatter: a small fake transformer checkpoint (embedding,
// four layers of attention and MLP, norms, int8 weights with f32 scales, an f64 rotary table) is loaded by
// owners that read each full tensor once and scatter its shards. Column-parallel weights are cut along
// dim 0, row-parallel ones along dim 1, norms and tables are replicated. Every rank checks its shards byte
// for byte against values it computes on its own from the element coordinates.
//
//   mpirun -np 4 ./example_tp_weight_loading
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "redist/comm/mpi.hpp"
#include "redist/shard.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::shard_spec;

// Sizes divide by 1, 2, 3, 4 and 8 ranks.
constexpr std::int64_t vocab = 240, hidden = 48, ffn = 96, layers = 4;

std::vector<shard_spec> model_specs() {
  std::vector<shard_spec> s;
  const std::optional<int> replicated, dim0 = 0, dim1 = 1;
  s.push_back({"embed.weight", dtype::bf16, {vocab, hidden}, dim0, {}});
  s.push_back({"rotary.inv_freq", dtype::f64, {hidden / 2}, replicated, {}});
  for (std::int64_t l = 0; l < layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    s.push_back({p + "input_norm.weight", dtype::f32, {hidden}, replicated, {}});
    s.push_back({p + "attn.qkv.weight", dtype::bf16, {3 * hidden, hidden}, dim0, {}});  // column parallel
    s.push_back({p + "attn.qkv.bias", dtype::bf16, {3 * hidden}, dim0, {}});
    s.push_back({p + "attn.out.weight", dtype::bf16, {hidden, hidden}, dim1, {}});  // row parallel
    s.push_back({p + "attn.out.bias", dtype::bf16, {hidden}, replicated, {}});
    s.push_back({p + "post_norm.weight", dtype::f32, {hidden}, replicated, {}});
    s.push_back({p + "mlp.up.weight", dtype::i8, {2 * ffn, hidden}, dim0, {}});  // gate and up, int8
    s.push_back({p + "mlp.up.scale", dtype::f32, {2 * ffn}, dim0, {}});
    s.push_back({p + "mlp.down.weight", dtype::f16, {hidden, ffn}, dim1, {}});
    s.push_back({p + "layer_id", dtype::i64, {}, replicated, {}});
  }
  s.push_back({"final_norm.weight", dtype::f32, {hidden}, replicated, {}});
  s.push_back({"lm_head.weight", dtype::bf16, {vocab, hidden}, dim0, 0});  // rank 0 reads the head itself
  return s;
}

// The checkpoint's value of element `flat` of tensor `t`: any rank can compute any element.
double value(std::size_t t, std::size_t flat) {
  return static_cast<double>((t * 7919 + flat * 104729) % 2001) / 1000.0 - 1.0;
}

// Element `flat` of a tensor of type `type`, stored at `out`.
void store(dtype type, std::size_t t, std::size_t flat, std::byte* out) {
  const double v = value(t, flat);
  auto put = [&](auto x) { std::memcpy(out, &x, sizeof x); };
  switch (type) {
    case dtype::f64:
      put(v);
      break;
    case dtype::f32:
      put(static_cast<float>(v));
      break;
    case dtype::f16:
      put(redist::f32_to_f16(static_cast<float>(v)));
      break;
    case dtype::bf16:
      put(redist::f32_to_bf16(static_cast<float>(v)));
      break;
    case dtype::i8:
      put(static_cast<std::int8_t>(v * 100));
      break;
    case dtype::i64:
      put(static_cast<std::int64_t>(t) * 1000 + static_cast<std::int64_t>(flat));
      break;
    default:
      put(static_cast<std::uint8_t>(flat));
      break;
  }
}

// What "reading the checkpoint" returns for tensor t: the full tensor.
host_tensor read_checkpoint(const shard_spec& s, std::size_t t) {
  host_tensor full = host_tensor::uninitialized(s.dtype, s.shape);
  const std::size_t width = redist::size_of(s.dtype);
  for (std::size_t e = 0; e < full.numel(); ++e)
    store(s.dtype, t, e, static_cast<std::byte*>(full.data()) + e * width);
  return full;
}

// Whether `got` is rank r's shard of tensor t: each element compared with the checkpoint's element at the
// same coordinates, shifted along the shard dim by r's slice.
bool check_shard(const shard_spec& s, std::size_t t, const host_tensor& got, int r, int ranks) {
  std::vector<std::int64_t> shape = s.shape;
  if (s.shard_dim) shape[static_cast<std::size_t>(*s.shard_dim)] /= ranks;
  if (got.dtype() != s.dtype ||
      !std::equal(shape.begin(), shape.end(), got.shape().begin(), got.shape().end())) {
    return false;
  }
  const std::size_t width = redist::size_of(s.dtype);
  std::byte want[8];
  for (std::size_t e = 0; e < got.numel(); ++e) {
    std::size_t rest = e, flat = 0, scale = 1;
    for (std::size_t d = shape.size(); d-- > 0;) {  // coordinates of e in the shard, then in the full tensor
      auto x = static_cast<std::int64_t>(rest % static_cast<std::size_t>(shape[d]));
      rest /= static_cast<std::size_t>(shape[d]);
      if (s.shard_dim && d == static_cast<std::size_t>(*s.shard_dim)) x += r * shape[d];
      flat += static_cast<std::size_t>(x) * scale;
      scale *= static_cast<std::size_t>(s.shape[d]);
    }
    store(s.dtype, t, flat, want);
    if (std::memcmp(want, static_cast<const std::byte*>(got.data()) + e * width, width) != 0) return false;
  }
  return true;
}

int run() {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const std::vector<shard_spec> specs = model_specs();
  const redist::shard_options options{.max_batch_bytes = 16 << 10};  // small, so that batches pipeline
  const redist::shard_plan plan = redist::plan_shards(specs, comm.size(), options);

  std::size_t loaded = 0, loaded_bytes = 0;
  const auto weights = redist::shard_scatter(
      comm, specs,
      [&](std::size_t t) {
        ++loaded;
        host_tensor full = read_checkpoint(specs[t], t);
        loaded_bytes += full.nbytes();
        return full;
      },
      options);

  std::size_t wrong = 0, held = 0;
  for (std::size_t t = 0; t < specs.size(); ++t) {
    held += weights[t].tensor.nbytes();
    if (weights[t].name != specs[t].name ||
        !check_shard(specs[t], t, weights[t].tensor, comm.rank(), comm.size())) {
      std::fprintf(stderr, "rank %d: wrong shard of %s\n", comm.rank(), specs[t].name.c_str());
      ++wrong;
    }
  }
  std::printf(
      "rank %d: read %zu of %zu tensors (%zu bytes), holds %zu bytes of shards and copies, %zu wrong\n",
      comm.rank(), loaded, specs.size(), loaded_bytes, held, wrong);
  const std::uint64_t all_wrong = comm.allreduce_sum(wrong);
  if (comm.rank() == 0) {
    std::printf("%zu tensors in %zu batches on %d ranks: %s\n", specs.size(), plan.batches(), comm.size(),
                all_wrong == 0 ? "every shard verified" : "MISMATCH");
  }
  return all_wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 1;
  try {
    status = run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tp_weight_loading: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return status;
}
