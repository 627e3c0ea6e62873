#include <cstdio>
#include <redist/comm/mpi.hpp>
#include <redist/redistribute.hpp>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int wrong = 0;
  {
    const redist::mpi_communicator comm(MPI_COMM_WORLD);  // duplicates it; never frees yours
    const std::int64_t me = comm.rank(), next = (me + 1) % comm.size();
    auto id = [](std::int64_t rank, int i) { return static_cast<redist::sample_id>(10 * rank + i); };
    // This rank made samples 10me and 10me+1, of 3 and 2 tokens: one i64 tensor packs both.
    redist::host_tensor tokens(redist::dtype::i64, {5});
    for (int t = 0; t < 5; ++t) static_cast<std::int64_t*>(tokens.data())[t] = 100 * me + t;
    const redist::sequence_batch<> mine({id(me, 0), id(me, 1)},
                                        {{"tokens", redist::dtype::i64, {}, {{3}, {2}}, std::move(tokens)}});
    // It wants the next rank's samples, the second first: one call on every rank moves them.
    const auto got = redist::redistribute(comm, mine, {id(next, 1), id(next, 0)});
    const auto* t = static_cast<const std::int64_t*>(got.data("tokens").data());
    for (int i = 0; i < 5; ++i) wrong += t[i] != 100 * next + (i + 3) % 5;
    std::printf("rank %d: samples of rank %d, %s\n", int(me), int(next), wrong ? "WRONG" : "as sent");
  }
  MPI_Finalize();
  return wrong;
}
