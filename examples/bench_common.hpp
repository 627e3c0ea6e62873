// Helpers the MPI benchmark programs in examples/ share: reading numeric options, timing (medians over
// iterations of the max over ranks), printing on rank 0, the node's core count and the workloads' hash.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <array>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace redist::bench {

// ---- the command line -------------------------------------------------------------------------------------

// Walks argv one option at a time. Every rank parses the same argv, so every rank reaches the same verdict:
// on a bad option rank 0 prints it with the usage and the whole job aborts (exit status 2), rather than one
// rank hanging in a collective the others skip.
class command_line {
 public:
  // `program` names the benchmark in messages; `synopsis` lists its options; `defaults` says what running it
  // with no arguments means.
  command_line(int argc, char** argv, const char* program, const char* synopsis, const char* defaults)
      : argc_(argc), argv_(argv), program_(program), synopsis_(synopsis), defaults_(defaults) {}

  // No arguments at all: each benchmark then runs its quick, checked configuration (what CTest runs).
  bool empty() const { return argc_ <= 1; }
  // Moves to the next option, recording on the way the two flags every benchmark takes: --check (verify every
  // result) and --quick (the small configuration). False past the last option.
  bool next(bool& check, bool& quick) {
    while (++at_ < argc_) {
      if (option() == "--check")
        check = true;
      else if (option() == "--quick")
        quick = true;
      else
        return true;
    }
    return false;
  }
  std::string_view option() const { return argv_[at_]; }

  [[noreturn]] void fail(const std::string& bad) const {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0)
      std::fprintf(stderr, "%s: %s\nusage: %s %s\n(no arguments: %s)\n", program_, bad.c_str(), program_,
                   synopsis_, defaults_);
    MPI_Abort(MPI_COMM_WORLD, 2);
    std::exit(2);  // MPI_Abort should not return; if it does, this rank still stops
  }
  [[noreturn]] void unknown() const { fail("unknown option " + std::string(option())); }

  // The current option's value, the next argument.
  const char* value() {
    if (at_ + 1 >= argc_) fail("option " + std::string(option()) + " needs a value");
    return argv_[++at_];
  }
  // A real number >= 0 (a count or a size given as a real, later clamped by the caller).
  double number() {
    const char* v = value();
    const double x = real(v);
    if (!(x >= 0)) fail("not a number: " + std::string(v));
    return x;
  }
  // A real number > 0; the second form reads one item of a list the caller splits.
  double positive() { return positive(value()); }
  double positive(const std::string& v) const {
    const double x = real(v.c_str());
    if (!(x > 0)) fail("not a positive number: " + v);
    return x;
  }
  // An unsigned integer (strtoull's reading: a leading '-' wraps, as it always did here).
  std::uint64_t integer() {
    const char* v = value();
    bool ok = false;
    const std::uint64_t x = unsigned_integer(v, ok);
    if (!ok) fail("not a number: " + std::string(v));
    return x;
  }
  // The same, at least `low`; the message names the bound.
  std::uint64_t integer_at_least(std::uint64_t low) {
    const char* v = value();
    bool ok = false;
    const std::uint64_t x = unsigned_integer(v, ok);
    if (!ok || x < low) fail("not a number of at least " + std::to_string(low) + ": " + v);
    return x;
  }

 private:
  // The whole text must be the number: "12x" or "" is not 12 or 0. NaN marks a text that is not one (NaN
  // itself fails every caller's range check too).
  static double real(const char* v) {
    char* end = nullptr;
    const double x = std::strtod(v, &end);
    return end == v || *end != '\0' ? std::numeric_limits<double>::quiet_NaN() : x;
  }
  static std::uint64_t unsigned_integer(const char* v, bool& ok) {
    char* end = nullptr;
    const unsigned long long x = std::strtoull(v, &end, 10);
    ok = end != v && *end == '\0';
    return static_cast<std::uint64_t>(x);
  }

  int argc_;
  char** argv_;
  const char* program_;
  const char* synopsis_;
  const char* defaults_;
  int at_ = 0;
};

// ---- timing -----------------------------------------------------------------------------------------------

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// A collective: a run takes as long as its slowest rank.
inline double max_over_ranks(double t, MPI_Comm comm) {
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
  return t;
}

// In which order the methods run within one iteration.
enum class method_order {
  fixed,     // always 0, 1, ..., N-1
  rotating,  // iteration i starts at method i % N, so no method always inherits the same one's heap and
             // caches
};

// Warm-up, then timed iterations; in each every method runs `calls` times in a row after a barrier, and its
// time per call is the max over ranks divided by calls (a loop of short calls, as a model's layers make them,
// is timed whole: the ranks' skew leaving the barrier is not charged to one call). Interleaving spreads
// background load over all methods alike. Returns each method's median.
template <std::size_t N>
std::array<double, N> time_medians(int warmup, int iters, MPI_Comm comm,
                                   const std::array<std::function<void()>, N>& fs, method_order order,
                                   int calls = 1) {
  std::array<std::vector<double>, N> times;
  for (int i = 0; i < warmup + iters; ++i)
    for (std::size_t k = 0; k < N; ++k) {
      const std::size_t m = order == method_order::rotating ? (k + static_cast<std::size_t>(i)) % N : k;
      MPI_Barrier(comm);
      const double t0 = MPI_Wtime();
      for (int c = 0; c < calls; ++c) fs[m]();
      const double t = max_over_ranks(MPI_Wtime() - t0, comm) / calls;
      if (i >= warmup) times[m].push_back(t);
    }
  std::array<double, N> out{};
  for (std::size_t m = 0; m < N; ++m) out[m] = median(times[m]);
  return out;
}

// ---- output and environment -------------------------------------------------------------------------------

// printf on rank 0 only: every rank computes the same report, one prints it.
[[gnu::format(printf, 2, 3)]] inline void say(int rank, const char* format, ...) {
  if (rank != 0) return;
  std::va_list args;
  va_start(args, format);
  std::vprintf(format, args);
  va_end(args);
}

// One ratio a benchmark claims, on a line of its own for bench/run_many_cores.sh's table: "ratio <benchmark>
// <case> <value>" (the case one word: its parts joined by ':'), library time over hand-written time.
inline void say_ratio(int rank, const char* benchmark, const std::string& which, double value) {
  std::string word;  // "dispatch, all packed" reads "dispatch-all-packed"
  for (const char c : which)
    if (c != ',') word += c == ' ' ? '-' : c;
  say(rank, "ratio %s %s %.3f\n", benchmark, word.c_str(), value);
}

// Ranks on this node against its cores: more ranks than cores make timings CPU-bound and noisy, which the
// report says. Collective over `comm`.
struct node_load {
  int ranks = 1;
  unsigned cores = 1;
  bool oversubscribed() const { return static_cast<unsigned>(ranks) > cores; }
};
inline node_load node_load_of(MPI_Comm comm, int rank) {
  node_load n;
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &n.ranks);
  MPI_Comm_free(&node);
  n.cores = std::max(1u, std::thread::hardware_concurrency());
  return n;
}

// splitmix64's finalizer: the workloads' values are pure functions of (seed, rank, index) through it, so any
// rank can compute what any other should hold.
inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace redist::bench
