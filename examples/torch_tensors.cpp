// PyTorch tensors through redistribute(): each rank packs the samples it made into at::Tensor keys (token ids
// i64, log-probabilities f32, hidden states bf16 [tokens, 16]) and asks for a reordered share of everyone's;
// what comes back is at::Tensor (allocated by at::empty), checked with at::equal against tensors recomputed
// from the ids. Include redist/adapters/torch.hpp where libtorch is linked.
//
//   mpirun -np 4 ./example_torch_tensors
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "redist/adapters/torch.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/redistribute.hpp"

namespace {

using redist::sample_id;
using torch_batch = redist::sequence_batch<at::Tensor>;
constexpr int per_rank = 6;

// Sample `id`: 3 + id % 7 tokens; every value a function of (id, token).
std::int64_t length(sample_id id) { return 3 + static_cast<std::int64_t>(id % 7); }
at::Tensor token_ids(sample_id id) {
  return (at::arange(length(id), at::kLong) * 7 + static_cast<std::int64_t>(id)) % 32000;
}
at::Tensor logprobs(sample_id id) {
  return at::arange(length(id), at::kFloat) / -16.0 - static_cast<double>(id % 3);
}
at::Tensor hidden(sample_id id) {
  return at::arange(length(id) * 16, at::kFloat)
      .reshape({length(id), 16})
      .add(static_cast<double>(id))
      .to(at::kBFloat16);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int wrong = 0;
  {
    const redist::mpi_communicator comm(MPI_COMM_WORLD);
    const int me = comm.rank(), n = comm.size();
    std::vector<sample_id> ids;
    redist::seqlen_table lens;
    std::vector<at::Tensor> t, l, h;
    for (int i = 0; i < per_rank; ++i) {
      ids.push_back(static_cast<sample_id>(me * per_rank + i));
      const std::int64_t tokens[] = {length(ids.back())};
      lens.push_back(tokens);
      t.push_back(token_ids(ids.back()));
      l.push_back(logprobs(ids.back()));
      h.push_back(hidden(ids.back()));
    }
    const torch_batch mine(ids, {{"hidden", redist::dtype::bf16, {16}, lens, at::cat(h)},
                                 {"logprobs", redist::dtype::f32, {}, lens, at::cat(l)},
                                 {"token_ids", redist::dtype::i64, {}, lens, at::cat(t)}});
    // Every rank wants one sample of every rank, the last ranks' first, and one more of the next rank.
    std::vector<sample_id> wanted;
    for (int r = n - 1; r >= 0; --r) wanted.push_back(static_cast<sample_id>(r * per_rank + me % per_rank));
    wanted.push_back(static_cast<sample_id>(((me + 1) % n) * per_rank + (me + 1) % per_rank));
    if (n == 1) wanted.pop_back();  // already wanted
    const torch_batch got = redist::redistribute(comm, mine, wanted);

    std::vector<at::Tensor> et, el, eh;
    for (sample_id id : wanted) {
      et.push_back(token_ids(id));
      el.push_back(logprobs(id));
      eh.push_back(hidden(id));
    }
    wrong = !std::equal(got.ids().begin(), got.ids().end(), wanted.begin(), wanted.end()) ||
            !at::equal(got.data("token_ids"), at::cat(et)) || !at::equal(got.data("logprobs"), at::cat(el)) ||
            !at::equal(got.data("hidden"), at::cat(eh)) || got.data("hidden").scalar_type() != at::kBFloat16;
    std::printf("rank %d: %zu samples as at::Tensor, hidden %s [%lld, %lld]: %s\n", me, got.size(),
                std::string(at::toString(got.data("hidden").scalar_type())).c_str(),
                static_cast<long long>(got.data("hidden").size(0)),
                static_cast<long long>(got.data("hidden").size(1)),
                wrong ? "WRONG" : "equal to the recomputed tensors");
  }
  MPI_Finalize();
  return wrong;
}
