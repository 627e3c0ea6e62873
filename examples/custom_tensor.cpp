// A tensor type of the user's own, made usable by specializing redist::tensor_traits and nothing else, then
// moved with the one-call redistribute(): every rank sends each other rank one sample and checks its bytes.
#include <redist/comm/mpi.hpp>
#include <redist/redistribute.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <span>
#include <stdexcept>
#include <vector>

// The user's tensor: float32 only, shape and values in std::vectors.
struct my_tensor {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

// What redist needs to know of it. allocate() lets redist create the result's tensors.
template <>
struct redist::tensor_traits<my_tensor> {
  static void* data(my_tensor& t) { return t.values.data(); }
  static const void* data(const my_tensor& t) { return t.values.data(); }
  static redist::dtype dtype(const my_tensor&) { return redist::dtype::f32; }
  static std::size_t rank(const my_tensor& t) { return t.shape.size(); }
  static std::int64_t extent(const my_tensor& t, std::size_t dim) { return t.shape[dim]; }
  static my_tensor allocate(redist::dtype type, std::span<const std::int64_t> shape) {
    if (type != redist::dtype::f32) throw std::invalid_argument("my_tensor holds float32 only");
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return {{shape.begin(), shape.end()}, std::vector<float>(static_cast<std::size_t>(n))};
  }
};

// Sample `to * 1000 + from` goes from rank `from` to rank `to`: 1 + to tokens of [tokens, 2] float32 values.
float value(std::uint64_t id, std::int64_t i) {
  return static_cast<float>(id) + 0.25f * static_cast<float>(i);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int wrong = 0;
  {
    const redist::mpi_communicator comm(MPI_COMM_WORLD);
    const int me = comm.rank(), n = comm.size();
    std::vector<redist::sample_id> ids, wanted;
    redist::seqlen_table lens;
    my_tensor hidden{{0, 2}, {}};
    for (int to = 0; to < n; ++to) {
      ids.push_back(static_cast<redist::sample_id>(to * 1000 + me));
      wanted.push_back(static_cast<redist::sample_id>(me * 1000 + to));  // one from every rank
      const std::int64_t tokens[] = {1 + to};
      lens.push_back(tokens);
      for (std::int64_t i = 0; i < 2 * (1 + to); ++i) hidden.values.push_back(value(ids.back(), i));
      hidden.shape[0] += 1 + to;
    }
    const redist::sequence_batch<my_tensor> mine(ids, {{"hidden", redist::dtype::f32, {2}, lens, hidden}});
    const redist::sequence_batch<my_tensor> got = redist::redistribute(comm, mine, wanted);
    wrong += !std::ranges::equal(got.ids(), wanted);
    const auto& values = got.data("hidden").values;
    for (std::size_t s = 0, at = 0; s < wanted.size(); ++s)
      for (std::int64_t i = 0; i < 2 * (1 + me); ++i) wrong += values.at(at++) != value(wanted[s], i);
    std::printf("rank %d: %zu samples of my_tensor from %d ranks, %s\n", me, got.size(), n,
                wrong ? "WRONG" : "every value as sent");
  }
  MPI_Finalize();
  return wrong != 0;
}
