// Benchmark of the alltoallv written over the point-to-point group (redist::grouped::alltoallv, the code the
// NCCL backend runs) against MPI_Alltoallv moving the same bytes between the same buffers, nccl-tests style:
// uneven blocks (each rank pair's count drawn between 0.5x and 1.5x the mean, some pairs empty), sizes swept
// by a factor of 4, median time (max over ranks), algbw, busbw, the ratio, and #wrong (every received byte
// checked against its expectation after the timing).
//
//   mpirun -np 8 ./example_bench_grouped               the sweep, 64 KiB to 64 MiB per rank
//   mpirun -np 2 ./example_bench_grouped --quick       two small sizes, what CTest runs (no arguments: the
//   same)
// More: --max-mib X (largest size per rank, 64), --iters N (20), --warmup N (3), --seed N (1). Exits non-zero
// when a byte is wrong or on an error; the ratio target (<= 1.10) is reported, not failed.
#include <mpi.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "bench_counts.hpp"
#include "redist/comm/grouped.hpp"
#include "redist/comm/mpi.hpp"

namespace {

using redist::bench::mix;
using redist::bench::say;

struct config {
  double max_mib = 64;
  int iters = 20;
  int warmup = 3;
  std::uint64_t seed = 1;
  bool quick = false;
};

std::byte value(std::uint64_t seed, std::size_t from, std::size_t to, std::size_t i) {
  return static_cast<std::byte>(mix(seed ^ (from << 48) ^ (to << 32) ^ i) & 0xff);
}

// Bytes rank `from` sends rank `to` for a mean block of `mean` bytes: 0.5x to 1.5x of it, an eighth of the
// pairs none.
std::size_t block(std::uint64_t seed, std::size_t from, std::size_t to, std::size_t mean) {
  const std::uint64_t d = mix(seed ^ 0xb10c ^ (from << 20) ^ to);
  if (d % 8 == 0) return 0;
  return mean / 2 + (d >> 8) % (mean + 1);
}

struct exchange {
  std::vector<std::byte> send, recv_grouped, recv_mpi;
  std::vector<std::size_t> sc, sd, rc, rd;
  std::vector<int> isc, isd, irc, ird;
};

exchange make(std::uint64_t seed, std::size_t me, std::size_t n, std::size_t mean) {
  exchange x;
  x.sc.resize(n);
  x.rc.resize(n);
  x.sd.resize(n);
  x.rd.resize(n);
  std::size_t st = 0, rt = 0;
  for (std::size_t p = 0; p < n; ++p) {
    x.sc[p] = block(seed, me, p, mean);
    x.rc[p] = block(seed, p, me, mean);
    x.sd[p] = st;
    x.rd[p] = rt;
    st += x.sc[p];
    rt += x.rc[p];
  }
  x.send.resize(st);
  for (std::size_t p = 0; p < n; ++p)
    for (std::size_t i = 0; i < x.sc[p]; ++i) x.send[x.sd[p] + i] = value(seed, me, p, i);
  x.recv_grouped.assign(rt, std::byte{0});
  x.recv_mpi.assign(rt, std::byte{0});
  x.isc.assign(x.sc.begin(), x.sc.end());
  x.isd.assign(x.sd.begin(), x.sd.end());
  x.irc.assign(x.rc.begin(), x.rc.end());
  x.ird.assign(x.rd.begin(), x.rd.end());
  return x;
}

std::size_t wrong(const exchange& x, const std::vector<std::byte>& got, std::uint64_t seed, std::size_t me) {
  std::size_t bad = 0;
  for (std::size_t p = 0; p < x.rc.size(); ++p)
    for (std::size_t i = 0; i < x.rc[p]; ++i) bad += got[x.rd[p] + i] != value(seed, p, me, i) ? 1 : 0;
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 0;
  try {
    const redist::mpi_communicator comm(MPI_COMM_WORLD);
    const int rank = comm.rank();
    config c;
    bool check = true;
    redist::bench::command_line args(argc, argv, "bench_grouped",
                                     "[--quick] [--max-mib X] [--iters N] [--warmup N] [--seed N]",
                                     "--quick");
    if (args.empty()) c.quick = true;
    while (args.next(check, c.quick)) {
      if (args.option() == "--max-mib")
        c.max_mib = args.positive();
      else if (args.option() == "--iters")
        c.iters = static_cast<int>(std::min<std::uint64_t>(args.integer_at_least(1), 100000));
      else if (args.option() == "--warmup")
        c.warmup = static_cast<int>(std::min<std::uint64_t>(args.integer(), 100000));
      else if (args.option() == "--seed")
        c.seed = args.integer();
      else
        args.unknown();
    }
    const auto n = static_cast<std::size_t>(comm.size());
    const auto me = static_cast<std::size_t>(rank);
    const auto load = redist::bench::node_load_of(MPI_COMM_WORLD, rank);
    say(rank, "# bench_grouped: %d ranks, %d on this node of %u cores%s\n", comm.size(), load.ranks,
        load.cores, load.oversubscribed() ? " (oversubscribed: timings are CPU-bound and noisy)" : "");
    say(rank,
        "# time: median of %d iterations after %d warm-up, each the max over ranks after a barrier; "
        "size: bytes each rank sends (blocks 0.5x-1.5x the mean, an eighth of the pairs empty)\n",
        c.quick ? 3 : c.iters, c.quick ? 1 : c.warmup);
    redist::bench::print_counts_legend(rank);
    say(rank, "# %12s %-22s %10s %11s %11s %8s %6s\n", "size(B)", "method", "time(us)", "algbw(GB/s)",
        "busbw(GB/s)", "ratio", "#wrong");
    std::size_t largest = static_cast<std::size_t>(c.max_mib * (1 << 20));
    std::size_t smallest = std::size_t{64} << 10;
    if (c.quick) {
      smallest = std::size_t{16} << 10;
      largest = std::size_t{256} << 10;
    }
    std::size_t total_wrong = 0;
    double worst = 0;
    for (std::size_t size = smallest; size <= largest; size *= 4) {
      const std::size_t mean = std::max<std::size_t>(1, size / n);
      exchange x = make(c.seed + size, me, n, mean);
      const std::array<std::function<void()>, 2> methods{
          [&] { redist::grouped::alltoallv(comm, x.send, x.sc, x.sd, x.recv_grouped, x.rc, x.rd); },
          [&] {
            MPI_Alltoallv(x.send.data(), x.isc.data(), x.isd.data(), MPI_BYTE, x.recv_mpi.data(),
                          x.irc.data(), x.ird.data(), MPI_BYTE, comm.native());
          }};
      const auto t =
          redist::bench::time_medians<2>(c.quick ? 1 : c.warmup, c.quick ? 3 : c.iters, MPI_COMM_WORLD,
                                         methods, redist::bench::method_order::rotating);
      std::uint64_t bad[2] = {wrong(x, x.recv_grouped, c.seed + size, me),
                              wrong(x, x.recv_mpi, c.seed + size, me)};
      MPI_Allreduce(MPI_IN_PLACE, bad, 2, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
      std::uint64_t sent = x.send.size();
      MPI_Allreduce(MPI_IN_PLACE, &sent, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
      const double factor = n > 1 ? static_cast<double>(n - 1) / static_cast<double>(n) : 1.0;
      const char* names[2] = {"grouped::alltoallv", "MPI_Alltoallv"};
      for (int m = 0; m < 2; ++m) {
        const double algbw = static_cast<double>(sent) / t[static_cast<std::size_t>(m)] / 1e9;
        say(rank, "  %12llu %-22s %10.1f %11.3f %11.3f %8s %6llu\n", static_cast<unsigned long long>(sent),
            names[m], t[static_cast<std::size_t>(m)] * 1e6, algbw, algbw * factor,
            m == 0 ? std::to_string(t[0] / t[1]).substr(0, 5).c_str() : "",
            static_cast<unsigned long long>(bad[m]));
      }
      // Counts per call (bench_counts.hpp), against the bytes this rank receives.
      for (std::size_t m = 0; m < 2; ++m)
        redist::bench::print_counts(
            rank, std::to_string(sent) + " " + names[m],
            redist::bench::count_calls(MPI_COMM_WORLD, methods[m], x.recv_mpi.size()));
      redist::bench::say_ratio(rank, "bench_grouped",
                               std::to_string(size) + "B:grouped::alltoallv/MPI_Alltoallv", t[0] / t[1]);
      total_wrong += bad[0] + bad[1];
      worst = std::max(worst, t[0] / t[1]);
    }
    say(rank, "# target: grouped::alltoallv / MPI_Alltoallv <= 1.10 at every size: worst %.2f, %s\n", worst,
        worst <= 1.10 ? "met" : "MISSED");
    if (total_wrong != 0) {
      say(rank, "# %llu wrong bytes\n", static_cast<unsigned long long>(total_wrong));
      status = 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_grouped: %s\n", e.what());
    status = 1;
  }
  MPI_Finalize();
  return status;
}
