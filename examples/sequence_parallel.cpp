// Ulysses sequence parallelism with redist::seqpar: every rank holds a slice of a long sequence, attention
// needs the whole sequence per head, so an all-to-all trades the sequence split for a head split, each rank
// attends over its heads, and a second all-to-all trades back. The sequence (37 tokens) does not divide by
// the ranks: slicing pads it with zeros, the heads' all-to-all cuts the padding off before attention (padding
// tokens would be attended to), the way back pads again, and the final gather cuts it. The result must equal
// the same attention computed on one process, bit for bit.
//
//   mpirun -np 4 ./example_sequence_parallel
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

#include "redist/comm/mpi.hpp"
#include "redist/seqpar.hpp"

namespace {

using redist::host_tensor;

constexpr std::int64_t batch = 2, seq = 37, heads = 24, head_dim = 16;  // 24 heads divide by 1, 2, 3, 4, 8

// The model's input [batch, seq, heads, head_dim]: the same on every rank, as a data loader would give it.
host_tensor make_input() {
  host_tensor x(redist::dtype::f32, {batch, seq, heads, head_dim});
  auto v = x.values<float>();
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
  return x;
}

// Self-attention per (batch, head) over the whole sequence, q = k = v = x: for each token t,
// out[t] = sum_s softmax_s(x_t . x_s / sqrt(d)) x_s. x is [batch, S, h, d] with however many heads h this
// rank holds; each (batch, head) is computed the same way wherever it runs, so results compare bit for bit.
host_tensor attention(const host_tensor& x) {
  const auto extent = [&](std::size_t dim) { return static_cast<std::size_t>(x.extent(dim)); };
  const std::size_t B = extent(0), S = extent(1), h = extent(2), d = extent(3);
  host_tensor out(redist::dtype::f32, {x.shape().begin(), x.shape().end()});
  const auto in = x.values<float>();
  auto o = out.values<float>();
  const auto at = [&](std::size_t b, std::size_t t, std::size_t k) { return ((b * S + t) * h + k) * d; };
  const float scale = 1 / std::sqrt(static_cast<float>(d));
  std::vector<float> score(S);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t k = 0; k < h; ++k)
      for (std::size_t t = 0; t < S; ++t) {
        float top = -INFINITY;
        for (std::size_t s = 0; s < S; ++s) {
          float dot = 0;
          for (std::size_t e = 0; e < d; ++e) dot += in[at(b, t, k) + e] * in[at(b, s, k) + e];
          score[s] = dot * scale;
          top = std::max(top, score[s]);
        }
        float sum = 0;
        for (auto& sc : score) sum += sc = std::exp(sc - top);
        for (std::size_t e = 0; e < d; ++e) {
          float acc = 0;
          for (std::size_t s = 0; s < S; ++s) acc += score[s] * in[at(b, s, k) + e];
          o[at(b, t, k) + e] = acc / sum;
        }
      }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int ok = 0;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  try {
    const redist::mpi_communicator comm(MPI_COMM_WORLD);
    const host_tensor input = make_input();

    // This rank's part of the sequence: [batch, ceil(37 / P), heads, head_dim], zero-padded at the end.
    const host_tensor local = redist::seqpar::slice_inputs(comm, input, /*dim=*/1);
    // The whole sequence (padding cut: 37 tokens), this rank's heads: [batch, 37, heads / P, head_dim].
    const host_tensor per_head = redist::seqpar::gather_seq_scatter_heads(comm, local, /*seq_dim=*/1,
                                                                          /*head_dim=*/2, /*unpadded=*/seq);
    const host_tensor attended = attention(per_head);
    // Back to a slice of the sequence with every head (padded again), then everyone's slices, padding cut.
    const host_tensor sliced =
        redist::seqpar::gather_heads_scatter_seq(comm, attended, /*head_dim=*/2, /*seq_dim=*/1);
    const host_tensor output = redist::seqpar::gather_outputs(comm, sliced, /*dim=*/1, /*unpadded_size=*/seq);

    const host_tensor reference = attention(input);
    const bool same_shape =
        output.rank() == reference.rank() &&
        std::equal(output.shape().begin(), output.shape().end(), reference.shape().begin());
    ok = same_shape && output.nbytes() == reference.nbytes() &&
                 std::memcmp(output.data(), reference.data(), reference.nbytes()) == 0
             ? 1
             : 0;
    if (rank == 0) {
      std::printf(
          "sequence_parallel: %d ranks, input [%lld, %lld, %lld, %lld]: local slice of %lld tokens, "
          "%lld heads per rank during attention\n",
          comm.size(), static_cast<long long>(batch), static_cast<long long>(seq),
          static_cast<long long>(heads), static_cast<long long>(head_dim),
          static_cast<long long>(local.extent(1)), static_cast<long long>(per_head.extent(2)));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sequence_parallel: rank %d: %s\n", rank, e.what());
    ok = 0;
  }
  int all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  if (rank == 0)
    std::printf("sequence_parallel: %s\n", all ? "output equals single-process attention, bit for bit"
                                               : "MISMATCH with single-process attention");
  MPI_Finalize();
  return all ? 0 : 1;
}
