// Counts that do not depend on the machine, which the benchmarks print beside their times: per call, the MPI
// calls by kind (tests/probe's MPI probe), the bytes the program copies with memcpy/memmove per payload byte
// and what it allocates (tests/probe's copy and allocation counter), each the max over ranks.
#pragma once

#include <mpi.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>

#include "bench_common.hpp"
#include "copy_alloc_counter.hpp"
#include "mpi_probe.hpp"

namespace redist::bench {

// What one call of a method does on the busiest rank: each figure is the max over ranks on its own.
struct call_counts {
  double mpi = 0;  // every MPI call the probe wraps: the four kinds below together
  double collective = 0, point_to_point = 0, completion = 0, local = 0;
  // Bytes of memcpy/memmove calls made by the program's own code (the library's copies and a hand-written
  // baseline's, not the copies the MPI library makes inside its calls) per byte of the call's result: the
  // max over ranks, and all ranks' copies over all ranks' results. A rank also copies what it packs to send,
  // which is another rank's result: only the second says how often each payload byte is copied.
  double copied_per_payload_byte = 0, copied_per_payload_byte_all = 0;
  double allocated_bytes = 0, allocations = 0, largest_allocation = 0;  // through operator new
  bool copies_seen = true;  // false: the method copies in element loops the counter misses
};

// Whether the counter sees a method's copies: float32 staging casts every element in a loop of its own
// (host_space::to_f32 / from_f32), which is neither memcpy nor memmove; such rows print no copy count.
enum class copy_visibility { seen, element_casts };

// Runs `method` once unrecorded (kept buffers, workspaces and plan caches then stand as a loop of calls finds
// them), then `calls` times between the probe's and the counter's start() and stop(); returns the figures
// per call. payload_bytes: the bytes of the call's result on this rank. Collective over comm (two allreduces,
// after the recording).
inline call_counts count_calls(MPI_Comm comm, const std::function<void()>& method, std::size_t payload_bytes,
                               copy_visibility copies = copy_visibility::seen, int calls = 2) {
  namespace probe = redist::test::mpi_probe;
  namespace counter = redist::test::copy_alloc_counter;
  method();
  MPI_Barrier(comm);
  probe::start();
  counter::start();
  for (int i = 0; i < calls; ++i) method();
  counter::stop();
  probe::stop();
  const counter::figures f = counter::counts();
  const double n = calls;
  const double copied = static_cast<double>(f.copied_bytes) / n;
  double v[9] = {static_cast<double>(probe::total(probe::call_kind::collective).calls) / n,
                 static_cast<double>(probe::total(probe::call_kind::point_to_point).calls) / n,
                 static_cast<double>(probe::total(probe::call_kind::completion).calls) / n,
                 static_cast<double>(probe::total(probe::call_kind::local).calls) / n,
                 payload_bytes > 0 ? copied / static_cast<double>(payload_bytes)
                 : copied > 0      ? std::numeric_limits<double>::infinity()
                                   : 0.0,
                 static_cast<double>(f.allocated_bytes) / n,
                 static_cast<double>(f.allocations) / n,
                 0,
                 static_cast<double>(f.largest_allocation)};
  v[7] = v[0] + v[1] + v[2] + v[3];
  MPI_Allreduce(MPI_IN_PLACE, v, 9, MPI_DOUBLE, MPI_MAX, comm);
  double sums[2] = {copied, static_cast<double>(payload_bytes)};
  MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, comm);
  call_counts c;
  c.collective = v[0];
  c.point_to_point = v[1];
  c.completion = v[2];
  c.local = v[3];
  c.copied_per_payload_byte = v[4];
  c.allocated_bytes = v[5];
  c.allocations = v[6];
  c.mpi = v[7];
  c.largest_allocation = v[8];
  c.copied_per_payload_byte_all = sums[1] > 0 ? sums[0] / sums[1] : 0;
  c.copies_seen = copies == copy_visibility::seen && counter::copies_visible();
  return c;
}

// A count as an integer when it is one (every call alike), else with two decimals.
inline std::string count_text(double x) {
  char s[32];
  if (std::abs(x - std::round(x)) < 1e-9)
    std::snprintf(s, sizeof s, "%.0f", x);
  else
    std::snprintf(s, sizeof s, "%.2f", x);
  return s;
}

inline std::string bytes_text(double b) {
  char s[32];
  if (b < 1024)
    std::snprintf(s, sizeof s, "%.0f B", b);
  else if (b < 1024.0 * 1024)
    std::snprintf(s, sizeof s, "%.1f KiB", b / 1024);
  else
    std::snprintf(s, sizeof s, "%.1f MiB", b / (1024.0 * 1024));
  return s;
}

// One line per method, on rank 0, in one fixed format:
//   counts  <label>  mpi 7 (collective 3, p2p 2, wait 2, local 0)  copied 0.50 B/B (all ranks 0.45)
//   allocated 4.1 KiB in 12 per call (largest 432 B)
// where a method's MPI calls are of four kinds (collectives, point to point, completions, local queries
// and datatypes) and "copied" is per byte of its result.
inline void print_counts(int rank, const std::string& label, const call_counts& c) {
  char copied[64];
  if (c.copies_seen)
    std::snprintf(copied, sizeof copied, "copied %.2f B/B (all ranks %.2f)", c.copied_per_payload_byte,
                  c.copied_per_payload_byte_all);
  else
    std::snprintf(copied, sizeof copied, "copied - (element casts, not memcpy)");
  say(rank,
      "counts  %-30s mpi %s (collective %s, p2p %s, wait %s, local %s)  %s  allocated %s in %s per call "
      "(largest %s)\n",
      label.c_str(), count_text(c.mpi).c_str(), count_text(c.collective).c_str(),
      count_text(c.point_to_point).c_str(), count_text(c.completion).c_str(), count_text(c.local).c_str(),
      copied, bytes_text(c.allocated_bytes).c_str(), count_text(c.allocations).c_str(),
      bytes_text(c.largest_allocation).c_str());
}

// What the counts mean, printed once before a benchmark's counts lines.
inline void print_counts_legend(int rank) {
  say(rank,
      "# counts (do not depend on the machine): per call after one unrecorded call, each the max over ranks; "
      "mpi = MPI calls (collectives, point to point, waits/tests, local), through the MPI profiling "
      "interface; copied = bytes of memcpy/memmove calls made by this program's code (not MPI's internal "
      "copies, not float32 staging's element casts; the metadata codecs' copies included) per byte of the "
      "call's result on that rank (all ranks: all copies over all results); allocated = through operator "
      "new\n");
}

}  // namespace redist::bench
