// A test that must fail: rank 1 fails a CHECK, so the MPI doctest main has to print rank 1's report and make
// every rank exit non-zero without hanging. Registered by hand (not test_*.cpp) and expected to fail.
#include <doctest/doctest.h>
#include <mpi.h>

#include "mpi_test.hpp"

TEST_CASE("one rank fails, every rank reports failure") {
  const auto [rank, size] = redist::test::world();
  CHECK_MESSAGE(rank != 1, "deliberate failure on rank 1");
  // Rank 1 goes on after its failed CHECK and joins the collective: a failure must not leave the others
  // waiting.
  CHECK(redist::test::all_ranks(true));
  CHECK(size >= 1);
}

TEST_CASE("the test cases after a failure still run on every rank") {
  int sum = 0;
  const int one = 1;
  MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  CHECK(sum == redist::test::world().size);
}
