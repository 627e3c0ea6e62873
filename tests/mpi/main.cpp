// The doctest main of every MPI test: runs the tests on every rank, prints the output of each rank that
// failed with its lines prefixed "[rank R/N] " in rank order, and makes every rank exit non-zero if any rank
// failed. Built with REDIST_TEST_NEEDS_CUDA_DEVICE (the CUDA MPI tests), a rank without a CUDA device exits
// 77 before MPI starts, which CTest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <mpi.h>
#if defined(REDIST_TEST_NEEDS_CUDA_DEVICE)
#include <cuda_runtime_api.h>

#include <cstdio>
#endif

#include <algorithm>
#include <climits>
#include <cstddef>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string prefix_lines(const std::string& text, int rank, int size) {
  const std::string prefix = "[rank " + std::to_string(rank) + "/" + std::to_string(size) + "] ";
  std::string out;
  std::size_t begin = 0;
  while (begin < text.size()) {
    const std::size_t newline = text.find('\n', begin);
    const std::size_t end = newline == std::string::npos ? text.size() : newline;
    out += prefix;
    out.append(text, begin, end - begin);
    out += '\n';
    begin = end + 1;
  }
  return out;
}

// Rank 0 prints every rank's text in rank order: one writer, so lines from different ranks never interleave.
void print_in_rank_order(const std::string& text, MPI_Comm comm) {
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  // Gatherv counts and offsets are ints; a report larger than that is truncated rather than overflowed.
  const int length =
      static_cast<int>(std::min<std::size_t>(text.size(), static_cast<std::size_t>(INT_MAX / size)));
  std::vector<int> lengths(rank == 0 ? static_cast<std::size_t>(size) : 0);
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, comm);
  std::vector<int> offsets(lengths.size());
  std::string all;
  if (rank == 0) {
    for (std::size_t r = 1; r < lengths.size(); ++r) offsets[r] = offsets[r - 1] + lengths[r - 1];
    all.resize(static_cast<std::size_t>(offsets.back() + lengths.back()));
  }
  MPI_Gatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0, comm);
  if (rank == 0) std::cout << all << std::flush;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(REDIST_TEST_NEEDS_CUDA_DEVICE)
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
#endif
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  std::ostringstream report;
  doctest::Context context;
  // mpirun gives each rank a pseudo-terminal, so doctest would color text that is captured and then read from
  // CTest logs; --no-colors=false on the command line turns colors back on.
  context.setOption("no-colors", true);
  context.applyCommandLine(argc, argv);
  context.setCout(&report);
  const int result = context.run();

  // --help, --version, --list-test-cases, ...: every rank did the same and no test ran; rank 0 answers.
  if (context.shouldExit()) {
    if (rank == 0) std::cout << report.str() << std::flush;
    MPI_Finalize();
    return result;
  }

  const int failed_here = result == 0 ? 0 : 1;
  int failed = 0;
  MPI_Allreduce(&failed_here, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  print_in_rank_order(failed_here != 0 ? prefix_lines(report.str(), rank, size) : std::string(),
                      MPI_COMM_WORLD);
  if (rank == 0) {
    if (failed == 0) std::cout << report.str();  // doctest's own summary, as a one-process run prints it
    std::cout << "mpi doctest: " << size << " ranks, " << failed << " failed" << std::endl;
  }
  MPI_Finalize();
  return failed == 0 ? 0 : 1;
}
