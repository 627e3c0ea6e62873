// MPI tests of at::Tensor batches through the one-call redistribute, at every rank count: consumers that
// reorder and want samples several ranks also want, on the world, on a communicator whose ranks are the
// world's reversed, and on halves of the world split by parity and reversed, byte-exact against tensors
// recomputed from the ids; and one rank passing a transposed tensor, which every rank reports alike, naming
// that rank, with nothing moved.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../mpi/mpi_test.hpp"
#include "redist/adapters/torch.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/redistribute.hpp"

namespace {

using redist::sample_id;
using torch_batch = redist::sequence_batch<at::Tensor>;

// Sample id has 1 + id % 5 tokens; tokens i64 = 1000 id + t; hidden bf16 [tokens, 8] = (id + t + column)
// % 64.
std::int64_t tokens_of(sample_id id) { return 1 + static_cast<std::int64_t>(id % 5); }
at::Tensor tokens_tensor(sample_id id) {
  return at::arange(tokens_of(id), at::kLong) + 1000 * static_cast<std::int64_t>(id);
}
at::Tensor hidden_tensor(sample_id id) {
  const at::Tensor t = at::arange(tokens_of(id), at::kLong).unsqueeze(1),
                   c = at::arange(8, at::kLong).unsqueeze(0);
  return ((t + c + static_cast<std::int64_t>(id)) % 64).to(at::kBFloat16);
}
std::vector<sample_id> made_by(int r) {
  std::vector<sample_id> ids;
  for (int i = 0; i < 2 + r % 3; ++i) ids.push_back(static_cast<sample_id>(100 * r + i));
  return ids;
}

torch_batch produce(int r) {
  const auto ids = made_by(r);
  redist::seqlen_table lens;
  std::vector<at::Tensor> tokens, hidden;
  for (sample_id id : ids) {
    const std::int64_t n[] = {tokens_of(id)};
    lens.push_back(n);
    tokens.push_back(tokens_tensor(id));
    hidden.push_back(hidden_tensor(id));
  }
  return torch_batch(ids, {{"tokens", redist::dtype::i64, {}, lens, at::cat(tokens)},
                           {"hidden", redist::dtype::bf16, {8}, lens, at::cat(hidden)}});
}

// Rank r wants rank r+1's samples in reverse, then rank r+2's first sample (which rank r+1 also wants).
std::vector<sample_id> wanted_by(int r, int n) {
  auto next = made_by((r + 1) % n);
  std::vector<sample_id> ids(next.rbegin(), next.rend());
  const sample_id extra = made_by((r + 2) % n).front();
  if (std::find(ids.begin(), ids.end(), extra) == ids.end()) ids.push_back(extra);
  return ids;
}

void check_moves(MPI_Comm native) {
  const redist::mpi_communicator comm(native);
  const int r = comm.rank(), n = comm.size();
  const auto wanted = wanted_by(r, n);
  const torch_batch got = redist::redistribute(comm, produce(r), wanted);
  std::vector<at::Tensor> tokens, hidden;
  for (sample_id id : wanted) {
    tokens.push_back(tokens_tensor(id));
    hidden.push_back(hidden_tensor(id));
  }
  const bool ok = std::equal(got.ids().begin(), got.ids().end(), wanted.begin(), wanted.end()) &&
                  at::equal(got.data("tokens"), at::cat(tokens)) &&
                  at::equal(got.data("hidden"), at::cat(hidden)) &&
                  got.data("hidden").scalar_type() == at::kBFloat16;
  CHECK(redist::test::all_ranks(ok, native));
}

}  // namespace

TEST_CASE(
    "torch over MPI: reordering consumers get exactly the recomputed tensors, world and reversed world") {
  check_moves(MPI_COMM_WORLD);
  const auto reversed = redist::test::reversed_world();
  check_moves(reversed.get());
  // Two groups at once, the even and the odd world ranks, each numbered backwards: no rank of either group is
  // its world rank (beyond one or two ranks), and each group's samples stay in it.
  const auto [world_rank, world_size] = redist::test::world();
  MPI_Comm half = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank % 2, world_size - 1 - world_rank, &half);
  const redist::test::owned_comm owned(half);
  check_moves(owned.get());
}

TEST_CASE("torch over MPI: one rank's transposed tensor is the same error on every rank, naming it") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int r = comm.rank(), n = comm.size(), bad = n - 1;
  torch_batch mine = produce(r);
  at::Tensor square = at::arange(16, at::kLong).reshape({4, 4});
  if (r == bad) {
    // Valid when the batch is made; then transposed in place through the caller's handle, which shares the
    // batch's tensor, as torch tensors do.
    mine = torch_batch({9999}, {{"tokens", redist::dtype::i64, {4}, {{4}}, square}});
    square.t_();
  }
  const auto o = redist::test::outcome_of([&] { (void)redist::redistribute(comm, mine, wanted_by(r, n)); });
  std::vector<std::string> parts{"key 'tokens': data is not contiguous"};
  if (n > 1) parts.push_back("rank " + std::to_string(bad));  // one rank's own error names no rank
  redist::test::check_agreed_error(o, comm, parts);
}
