// A data loader on one rank builds a batch for every rank, each a nested record of named tensors and lists
// of a size of its own, and redist::dispatch() scatters them: every rank gets its batch with the same
// structure, names, dtypes, shapes and bytes, and checks it against what it computes from its rank alone.
//
//   mpirun -np 4 ./example_batch_dispatch
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "redist/comm/mpi.hpp"
#include "redist/dispatch.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using item = redist::nested<host_tensor>;

// Rank r's batch has n(r) tokens and 1 + r % 3 images of 3 x (4 + r) x 5 floats.
std::int64_t tokens_of(int r) { return 16 + 7 * r; }
std::int64_t token(int r, std::int64_t i) { return std::int64_t{r} * 100000 + i * 3; }
bool masked(int r, std::int64_t i) { return (i + r) % 4 != 3; }
float pixel(int r, int image, std::int64_t i) {
  return static_cast<float>(r) + 0.25f * static_cast<float>(image) + 0.5f * static_cast<float>(i);
}
std::vector<std::int64_t> image_shape(int r) { return {3, 4 + r, 5}; }

// {"input_ids": i64 [n], "attention": {"mask": bool [n], "positions": i32 [n]}, "images": [f32 tensors]}
item load_batch(int r) {
  const std::int64_t n = tokens_of(r);
  host_tensor ids(dtype::i64, {n}), mask(dtype::boolean, {n}), positions(dtype::i32, {n});
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    ids.values<std::int64_t>()[k] = token(r, i);
    mask.values<bool>()[k] = masked(r, i);
    positions.values<std::int32_t>()[k] = static_cast<std::int32_t>(i);
  }
  item::list images;
  for (int image = 0; image < 1 + r % 3; ++image) {
    host_tensor pixels(dtype::f32, image_shape(r));
    auto v = pixels.values<float>();
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = pixel(r, image, static_cast<std::int64_t>(i));
    images.push_back(std::move(pixels));
  }
  item::fields attention;
  attention.push_back({"mask", std::move(mask)});
  attention.push_back({"positions", std::move(positions)});
  item::fields batch;
  batch.push_back({"input_ids", std::move(ids)});
  batch.push_back({"attention", std::move(attention)});
  batch.push_back({"images", std::move(images)});
  return batch;
}

bool is_tensor(const item& x, dtype type, const std::vector<std::int64_t>& shape) {
  if (!x.is_tensor() || x.tensor().dtype() != type) return false;
  const auto s = x.tensor().shape();
  return std::vector<std::int64_t>(s.begin(), s.end()) == shape;
}

// Every name, kind, dtype, shape and value of rank r's batch, from r alone.
bool verify(const item& got, int r) {
  const std::int64_t n = tokens_of(r);
  if (!got.is_fields() || got.named().size() != 3) return false;
  const auto& f = got.named();
  if (f[0].name != "input_ids" || f[1].name != "attention" || f[2].name != "images") return false;
  if (!is_tensor(f[0].value, dtype::i64, {n}) || !f[1].value.is_fields() || !f[2].value.is_list())
    return false;
  const auto& attention = f[1].value.named();
  if (attention.size() != 2 || attention[0].name != "mask" || attention[1].name != "positions") return false;
  if (!is_tensor(attention[0].value, dtype::boolean, {n}) || !is_tensor(attention[1].value, dtype::i32, {n}))
    return false;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (f[0].value.tensor().values<std::int64_t>()[k] != token(r, i) ||
        attention[0].value.tensor().values<bool>()[k] != masked(r, i) ||
        attention[1].value.tensor().values<std::int32_t>()[k] != i)
      return false;
  }
  const auto& images = f[2].value.items();
  if (images.size() != static_cast<std::size_t>(1 + r % 3)) return false;
  for (int image = 0; image < 1 + r % 3; ++image) {
    const item& x = images[static_cast<std::size_t>(image)];
    if (!is_tensor(x, dtype::f32, image_shape(r))) return false;
    const auto v = x.tensor().values<float>();
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i] != pixel(r, image, static_cast<std::int64_t>(i))) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  bool ok = false;
  try {
    const redist::mpi_communicator comm(MPI_COMM_WORLD);
    const int loader = size - 1;  // the rank that reads the data
    item mine;
    if (rank == loader) {
      std::vector<item> batches;
      for (int r = 0; r < size; ++r) batches.push_back(load_batch(r));
      // By rvalue: the loader keeps its own batch without a copy.
      mine = redist::dispatch(comm, std::move(batches), loader);
    } else {
      mine = redist::dispatch(comm, {}, loader);
    }
    ok = verify(mine, rank);
    std::printf("batch_dispatch: rank %d got %lld tokens and %zu images from rank %d: %s\n", rank,
                static_cast<long long>(tokens_of(rank)), ok ? mine.named()[2].value.items().size() : 0,
                loader, ok ? "verified" : "MISMATCH");
  } catch (const redist::error& e) {
    std::fprintf(stderr, "batch_dispatch: rank %d: %s\n", rank, e.what());
  }
  int all_ok = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  if (rank == 0)
    std::printf("batch_dispatch: %d ranks, %s\n", size,
                all_ok ? "every batch verified byte for byte" : "FAILED");
  MPI_Finalize();
  return all_ok ? 0 : 1;
}
