// Benchmark of redist::seqpar::all_to_all in the Ulysses case against MPI_Alltoall of the same bytes, side by
// side in one run. Two directions, bf16, `heads` 32 x `dim` 128 (8 KiB per token), P ranks:
//   seq<-heads  x [tokens, 32, 128], scatter heads (dim 1), gather seq (dim 0): gather_seq_scatter_heads.
//               The sender packs (heads are not contiguous), the receiver lands blocks in place.
//   heads<-seq  x [P * tokens, 32 / P, 128], scatter seq (dim 0), gather heads (dim 1):
//   gather_heads_scatter_seq.
//               The sender sends x in place, the receiver unpacks.
// Six methods, each run after a barrier, time = max over ranks, median over iterations, interleaved (under 4
// MiB per rank, a sample is a loop of calls moving 4 MiB, timed per call: see calls_per_sample):
//   seqpar        redist::seqpar::all_to_all(comm, x, scatter, gather): agreement (one allreduce), a new
//                 output and staging buffer, pack or unpack, one alltoall.
//   hand          what a user writes for the same transform, as a function returning a new tensor: a new
//                 output and staging buffer, memcpy pack or unpack loops, one MPI_Alltoall.
//   seqpar-reuse  redist::seqpar::all_to_all_into a kept output, with a kept workspace.
//   hand-reuse    hand into a kept output with a kept staging buffer.
//   seqpar-prep   all_to_all_into with an exchange prepared once (seqpar::prepare_all_to_all), a kept output
//                 and workspace: no agreement per call, as a model's layers repeat one exchange.
//   bare          MPI_Alltoall alone, on buffers allocated and packed beforehand: the floor, for reference.
// THE TARGET (<= 1.10) IS MEASURED AGAINST THE HAND-WRITTEN CODE DOING THE SAME TRANSFORM: seqpar / hand, and
// seqpar-reuse / hand-reuse; the ratios to bare are printed too (bare skips the packing and the allocations).
// --check verifies every byte of every method's result (bare's where it is the output, seq<-heads) against
// index arithmetic.
//
//   mpirun -np 8 ./example_bench_seqpar --check --sizes 1,16,64   full mode (sizes in MiB per rank)
//   mpirun -np 2 ./example_bench_seqpar                            no arguments: --quick --check (CTest)
// More: --iters N (20), --warmup N (3), --system-malloc (glibc's moving mmap threshold: see
// fresh_allocator). --quick: 64 KiB and 256 KiB per rank, 1 warm-up, 3 iterations.
#include <mpi.h>

#if __has_include(<malloc.h>)
#include <malloc.h>  // mallopt (glibc)
#endif

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench_common.hpp"
#include "bench_counts.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/seqpar.hpp"

namespace {

using redist::host_tensor;
using redist::bench::say;

constexpr std::int64_t heads = 32, dim = 128;
constexpr std::size_t elem = 2;  // bf16
constexpr std::size_t token_bytes = heads * dim * elem;

struct config {
  std::vector<double> sizes_mib = {1, 16, 64};
  int warmup = 3;
  int iters = 20;
  bool check = false;
  bool quick = false;
  bool system_malloc = false;
};

config parse(int argc, char** argv) {
  redist::bench::command_line args(argc, argv, "bench_seqpar",
                                   "[--check] [--quick] [--sizes MIB,MIB,...] [--iters N] [--warmup N]",
                                   "--quick --check");
  config c;
  if (args.empty()) c.quick = c.check = true;
  while (args.next(c.check, c.quick)) {
    const std::string_view a = args.option();
    if (a == "--system-malloc") {
      c.system_malloc = true;
    } else if (a == "--sizes") {
      c.sizes_mib.clear();
      const std::string v = args.value();
      for (std::size_t at = 0; at <= v.size();) {
        const std::size_t comma = std::min(v.find(',', at), v.size());
        c.sizes_mib.push_back(args.positive(v.substr(at, comma - at)));
        at = comma + 1;
      }
    } else if (a == "--iters") {
      c.iters = std::max(1, static_cast<int>(args.positive()));
    } else if (a == "--warmup") {
      c.warmup = static_cast<int>(args.positive());
    } else {
      args.unknown();
    }
  }
  if (c.quick) {
    c.sizes_mib = {1.0 / 16, 1.0 / 4};
    c.warmup = std::min(c.warmup, 1);
    c.iters = std::min(c.iters, 3);
  }
  return c;
}

// ---- the workload -----------------------------------------------------------------------------------------

std::uint16_t value_of(std::uint64_t rank, std::uint64_t flat) {  // bf16 bits of element `flat` of `rank`
  std::uint64_t x = (rank << 40) ^ flat;
  x = (x ^ (x >> 31)) * 0x7fb5d329728ea185ull;
  x = (x ^ (x >> 27)) * 0x81dadef4bc2dd44dull;
  return static_cast<std::uint16_t>(x ^ (x >> 33));
}

struct direction {
  const char* name;
  int scatter, gather;
};
const direction directions[] = {{"seq<-heads", 1, 0}, {"heads<-seq", 0, 1}};

// x of rank `rank` for a direction: [tokens, heads, dim] or [P * tokens, heads / P, dim].
std::vector<std::int64_t> input_shape(const direction& d, std::int64_t tokens, std::int64_t P) {
  return d.scatter == 1 ? std::vector<std::int64_t>{tokens, heads, dim}
                        : std::vector<std::int64_t>{P * tokens, heads / P, dim};
}

host_tensor make_input(const std::vector<std::int64_t>& shape, int rank) {
  auto x = host_tensor::uninitialized(redist::dtype::bf16, shape);
  auto* v = static_cast<std::uint16_t*>(x.data());
  for (std::size_t i = 0; i < x.numel(); ++i) v[i] = value_of(static_cast<std::uint64_t>(rank), i);
  return x;
}

// Elements of `got` (the output of rank `me`) that differ from index arithmetic: output [t, h, e] of
// seq<-heads comes from rank t / tokens at [t % tokens, me * hp + h, e]; of heads<-seq from rank h / hp at
// [me * tokens + t, h % hp, e].
std::size_t wrong_in(const direction& d, const std::byte* got, std::int64_t tokens, std::int64_t P, int me) {
  const std::int64_t hp = heads / P;
  std::size_t wrong = 0;
  std::uint16_t v = 0;
  if (d.scatter == 1) {  // out [P * tokens, hp, dim]
    for (std::int64_t t = 0; t < P * tokens; ++t)
      for (std::int64_t h = 0; h < hp; ++h)
        for (std::int64_t e = 0; e < dim; ++e) {
          const auto src = static_cast<std::uint64_t>(t / tokens);
          const auto flat = static_cast<std::uint64_t>(((t % tokens) * heads + me * hp + h) * dim + e);
          std::memcpy(&v, got + static_cast<std::size_t>(((t * hp) + h) * dim + e) * elem, 2);
          wrong += v != value_of(src, flat) ? 1 : 0;
        }
  } else {  // out [tokens, P * hp, dim]
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t h = 0; h < P * hp; ++h)
        for (std::int64_t e = 0; e < dim; ++e) {
          const auto src = static_cast<std::uint64_t>(h / hp);
          const auto flat = static_cast<std::uint64_t>(((me * tokens + t) * hp + h % hp) * dim + e);
          std::memcpy(&v, got + static_cast<std::size_t>((t * P * hp + h) * dim + e) * elem, 2);
          wrong += v != value_of(src, flat) ? 1 : 0;
        }
  }
  return wrong;
}

// ---- the hand-written exchange ----------------------------------------------------------------------------

void pack_heads(const std::byte* in, std::size_t T, std::size_t n, std::size_t row, std::byte* send) {
  const std::size_t block = T * row;
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t j = 0; j < n; ++j) std::memcpy(send + j * block + t * row, in + (t * n + j) * row, row);
}

// What a user writes for the same transform, into `out` through `staging` (x's size): memcpy loops and one
// MPI_Alltoall. seq<-heads: pack [tokens, P, hp * dim] into [P, tokens, hp * dim], receive into out.
// heads<-seq: send x as it is, receive [P, tokens, hp * dim], unpack into [tokens, P, hp * dim].
void hand_into(const direction& d, const host_tensor& x, std::int64_t tokens, std::int64_t P, std::byte* out,
               std::byte* staging, MPI_Comm comm) {
  const auto T = static_cast<std::size_t>(tokens), n = static_cast<std::size_t>(P);
  const std::size_t row = static_cast<std::size_t>(heads / P * dim) * elem;  // one token's heads of one rank
  const std::size_t block = T * row;
  const auto* in = static_cast<const std::byte*>(x.data());
  const int count = static_cast<int>(block);
  if (d.scatter == 1) {
    pack_heads(in, T, n, row, staging);
    MPI_Alltoall(staging, count, MPI_BYTE, out, count, MPI_BYTE, comm);
    return;
  }
  MPI_Alltoall(in, count, MPI_BYTE, staging, count, MPI_BYTE, comm);
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t i = 0; i < n; ++i)
      std::memcpy(out + (t * n + i) * row, staging + i * block + t * row, row);
}

std::vector<std::int64_t> output_shape(const direction& d, std::int64_t tokens, std::int64_t P) {
  return d.scatter == 1 ? std::vector<std::int64_t>{P * tokens, heads / P, dim}
                        : std::vector<std::int64_t>{tokens, heads, dim};
}

// The same returning a new tensor, as a function of the user's would: output and staging allocated per call.
host_tensor hand_written(const direction& d, const host_tensor& x, std::int64_t tokens, std::int64_t P,
                         MPI_Comm comm) {
  auto out = host_tensor::uninitialized(redist::dtype::bf16, output_shape(d, tokens, P));
  std::unique_ptr<std::byte[]> staging(new std::byte[x.nbytes()]);
  hand_into(d, x, tokens, P, static_cast<std::byte*>(out.data()), staging.get(), comm);
  return out;
}

}  // namespace

// A small exchange is timed as a loop of calls moving 4 MiB per rank in all, per call: one call of 64 KiB
// lasts a few microseconds, as long as the ranks' skew leaving the barrier before it.
int calls_per_sample(std::size_t bytes_per_rank) {
  constexpr std::size_t loop_bytes = std::size_t{4} << 20;
  return static_cast<int>(std::max<std::size_t>(1, loop_bytes / std::max<std::size_t>(1, bytes_per_rank)));
}

// glibc maps a large block afresh or carves it from its heap depending on the blocks freed before (its mmap
// threshold moves), and where heap blocks land depends on every allocation made in between: a method that
// allocates per call paid page faults in one run and not in the next, or after one method and not another
// (the same code measured 1x to 10x). The threshold is fixed instead, so every block of 128 KiB or more is
// mapped afresh on every allocation: each allocating method pays the page faults of fresh memory, every call,
// whatever ran before it (what kept buffers spare). --system-malloc: glibc as configured. Returns which.
const char* fresh_allocator(bool system_malloc) {
#if defined(M_MMAP_THRESHOLD)
  if (!system_malloc && mallopt(M_MMAP_THRESHOLD, 128 << 10) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1)
    return "glibc, blocks of 128 KiB or more mapped afresh on every allocation (--system-malloc: as "
           "configured)";
#endif
  return "the system's malloc as configured";
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const config c = parse(argc, argv);
  const char* allocator = fresh_allocator(c.system_malloc);
  int me = 0, P = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  bool failed = false;
  try {
    if (heads % P != 0) {
      say(me, "bench_seqpar: %d ranks do not divide the %lld heads; nothing to measure\n", P,
          static_cast<long long>(heads));
      MPI_Finalize();
      return 0;
    }
    const redist::mpi_communicator comm(MPI_COMM_WORLD);
    MPI_Comm world = comm.native();  // the same processes; the MPI baselines run on the same duplicate
    say(me,
        "# bench_seqpar: %d ranks, bf16, %lld heads x %lld dim (%zu bytes per token), %d warm-up + %d timed "
        "iterations, median of the max over ranks (below 4 MiB per rank: per call, in loops of 4 MiB)%s\n",
        P, static_cast<long long>(heads), static_cast<long long>(dim), token_bytes, c.warmup, c.iters,
        c.check ? ", every byte checked" : "");
    say(me, "# allocator: %s\n", allocator);
    redist::bench::print_counts_legend(me);
    say(me, "# %-11s %9s %-13s %10s %8s %14s %6s\n", "direction", "MiB/rank", "method", "ms", "GB/s", "ratio",
        "wrong");
    struct row {
      std::string name;
      double mib, fresh, reused, prepared;
    };
    std::vector<row> rows;
    constexpr std::size_t methods = 6;
    const char* method_names[methods] = {"seqpar",     "hand",        "seqpar-reuse",
                                         "hand-reuse", "seqpar-prep", "bare"};
    for (double mib : c.sizes_mib) {
      const auto tokens = std::max<std::int64_t>(
          1, static_cast<std::int64_t>(mib * (1 << 20) / static_cast<double>(token_bytes)));
      for (const direction& d : directions) {
        const host_tensor x = make_input(input_shape(d, tokens, P), me);
        const std::size_t bytes = x.nbytes();
        const int count = static_cast<int>(bytes / static_cast<std::size_t>(P));
        // The reusing methods' output and staging, allocated (and touched) once; bare: seq<-heads' packed
        // send buffer (heads<-seq's x as it is) into a buffer allocated beforehand.
        host_tensor seqpar_out(redist::dtype::bf16, output_shape(d, tokens, P));
        redist::seqpar::workspace ws;
        const auto prepared = redist::seqpar::prepare_all_to_all(comm, x, d.scatter, d.gather);
        host_tensor prepared_out(redist::dtype::bf16, output_shape(d, tokens, P));
        redist::seqpar::workspace prepared_ws;
        host_tensor hand_out(redist::dtype::bf16, output_shape(d, tokens, P));
        redist::seqpar::workspace hand_ws;  // page-aligned as seqpar's: copies into both perform alike
        std::byte* const hand_staging = hand_ws.reserve(bytes);
        std::vector<std::byte> bare_send(bytes), bare_recv(bytes);
        if (d.scatter == 1)
          pack_heads(static_cast<const std::byte*>(x.data()), static_cast<std::size_t>(tokens),
                     static_cast<std::size_t>(P), static_cast<std::size_t>(heads / P * dim) * elem,
                     bare_send.data());
        else
          std::memcpy(bare_send.data(), x.data(), bytes);
        std::array<host_tensor, 2> fresh;  // the allocating methods' last results, for --check
        const std::array<std::function<void()>, methods> run = {
            [&] { fresh[0] = redist::seqpar::all_to_all(comm, x, d.scatter, d.gather); },
            [&] { fresh[1] = hand_written(d, x, tokens, P, world); },
            [&] { redist::seqpar::all_to_all_into(comm, x, d.scatter, d.gather, seqpar_out, &ws); },
            [&] {
              hand_into(d, x, tokens, P, static_cast<std::byte*>(hand_out.data()), hand_staging, world);
            },
            [&] { redist::seqpar::all_to_all_into(comm, prepared, x, prepared_out, &prepared_ws); },
            [&] {
              MPI_Alltoall(bare_send.data(), count, MPI_BYTE, bare_recv.data(), count, MPI_BYTE, world);
            }};
        // Rotating the order: no method always runs after the same one (whose cache and heap state it
        // inherits).
        const auto t = redist::bench::time_medians<methods>(
            c.warmup, c.iters, world, run, redist::bench::method_order::rotating, calls_per_sample(bytes));
        // Each method's result from its last timed run; bare's receive buffer is seq<-heads' output only.
        std::array<long long, methods> wrong;
        wrong.fill(-1);
        if (c.check) {
          const std::byte* results[methods] = {static_cast<const std::byte*>(fresh[0].data()),
                                               static_cast<const std::byte*>(fresh[1].data()),
                                               static_cast<const std::byte*>(seqpar_out.data()),
                                               static_cast<const std::byte*>(hand_out.data()),
                                               static_cast<const std::byte*>(prepared_out.data()),
                                               d.scatter == 1 ? bare_recv.data() : nullptr};
          std::array<long long, methods> w{};
          for (std::size_t m = 0; m < methods; ++m)
            w[m] = results[m] == nullptr ? 0 : static_cast<long long>(wrong_in(d, results[m], tokens, P, me));
          MPI_Allreduce(w.data(), wrong.data(), static_cast<int>(methods), MPI_LONG_LONG, MPI_SUM, world);
          for (std::size_t m = 0; m < methods; ++m) failed = failed || wrong[m] != 0;
          if (d.scatter != 1) wrong[5] = -1;
        }
        for (std::size_t m = 0; m < methods; ++m) {
          char ratio[40] = "";
          if (m == 0) std::snprintf(ratio, sizeof ratio, "%.3f /hand", t[0] / t[1]);
          if (m == 2 || m == 4) std::snprintf(ratio, sizeof ratio, "%.3f /hand-r", t[m] / t[3]);
          char wrong_text[24] = "-";
          if (wrong[m] >= 0) std::snprintf(wrong_text, sizeof wrong_text, "%lld", wrong[m]);
          const double gbs = t[m] > 0 ? static_cast<double>(bytes) / t[m] / 1e9 : 0;
          say(me, "  %-11s %9.3f %-13s %10.3f %8.2f %14s %6s\n", m == 0 ? d.name : "",
              static_cast<double>(bytes) / (1 << 20), method_names[m], t[m] * 1e3, gbs, ratio, wrong_text);
        }
        // Counts per call (bench_counts.hpp): every method's result is x's size on every rank.
        for (std::size_t m = 0; m < methods; ++m)
          redist::bench::print_counts(me, std::string(d.name) + " " + method_names[m],
                                      redist::bench::count_calls(world, run[m], bytes));
        rows.push_back(
            {d.name, static_cast<double>(bytes) / (1 << 20), t[0] / t[1], t[2] / t[3], t[4] / t[3]});
      }
    }
    say(me,
        "#\n# methods: seqpar = redist::seqpar::all_to_all (new output and staging each call); hand = the "
        "same "
        "transform hand-written\n#   (new output and staging each call, memcpy pack/unpack, MPI_Alltoall); "
        "seqpar-reuse = all_to_all_into a kept output\n#   with a kept workspace; hand-reuse = hand with a "
        "kept "
        "output and staging; seqpar-prep = all_to_all_into an exchange prepared once, kept output and "
        "workspace\n#   (no agreement per call); bare = MPI_Alltoall alone, buffers packed beforehand\n");
    say(me,
        "# target: seqpar / hand <= 1.10, measured against the hand-written code doing the same transform "
        "(bare does less: no packing)\n");
    for (const auto& r : rows)
      say(me,
          "#   %-11s %9.3f MiB/rank: seqpar/hand %.3f %s, seqpar-reuse/hand-reuse %.3f %s, "
          "seqpar-prep/hand-reuse %.3f %s\n",
          r.name.c_str(), r.mib, r.fresh, r.fresh <= 1.10 ? "met" : "MISSED", r.reused,
          r.reused <= 1.10 ? "met" : "MISSED", r.prepared, r.prepared <= 1.10 ? "met" : "MISSED");
    for (const auto& r : rows) {
      char at[64];
      std::snprintf(at, sizeof at, "%s@%.3gMiB", r.name.c_str(), r.mib);
      redist::bench::say_ratio(me, "bench_seqpar", std::string(at) + ":seqpar/hand", r.fresh);
      redist::bench::say_ratio(me, "bench_seqpar", std::string(at) + ":seqpar-reuse/hand-reuse", r.reused);
      redist::bench::say_ratio(me, "bench_seqpar", std::string(at) + ":seqpar-prep/hand-reuse", r.prepared);
    }
    if (c.check)
      say(me, "# check: %s\n",
          failed ? "WRONG BYTES" : "every byte of every method's result verified (bare: seq<-heads only)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_seqpar: rank %d: %s\n", me, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int ok = failed ? 0 : 1;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  MPI_Finalize();
  return ok ? 0 : 1;
}
