// Benchmark of redist::dispatch() against what a user would write by hand with MPI: the root encodes each
// rank's schema, MPI_Scatter's the sizes, MPI_Scatterv's the schemas, packs every rank's tensors into one
// buffer and MPI_Scatterv's it; receivers decode their schema (allocating the tensors) and unpack. Both
// scatter the same items from rank 0 and return the same trees. Two workloads: small (many tiny tensors per
// rank) and large (a few MiB per rank in a few tensors). Prints median times (max over ranks), each side of
// the ratio from the same run, and #wrong (with --check every rank compares every byte it got with its
// expectation).
//
//   mpirun -np 8 ./example_bench_dispatch --check        the full benchmark, every result verified
//   mpirun -np 2 ./example_bench_dispatch                no arguments: --quick --check (what CTest runs)
// More: --iters N (30), --warmup N (3), --small-tensors N (tiny tensors per rank, 256), --large-mib X (MiB
// per rank, 4), --seed N (1), --quick (64 tiny tensors, 0.5 MiB, 1 warm-up + 5 timed iterations). The rows
// "dispatch, all packed" and "dispatch, none packed" rerun dispatch with pack_below at its two extremes: the
// measurement behind its default. Exits non-zero when a byte is wrong or on any error.
#include <mpi.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bench_common.hpp"
#include "bench_counts.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/dispatch.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using item = redist::nested<host_tensor>;

struct config {
  int warmup = 3;
  int iters = 30;
  std::size_t small_tensors = 256;
  double large_mib = 4;
  std::uint64_t seed = 1;
  bool check = false;
  bool quick = false;
};

config parse(int argc, char** argv) {
  redist::bench::command_line args(argc, argv, "bench_dispatch",
                                   "[--check] [--quick] [--iters N] [--warmup N] [--small-tensors N] "
                                   "[--large-mib X] [--seed N]",
                                   "--quick --check");
  config c;
  if (args.empty()) c.quick = c.check = true;
  bool sized_small = false, sized_large = false;
  while (args.next(c.check, c.quick)) {
    const std::string_view a = args.option();
    if (a == "--iters") {
      c.iters = std::clamp(static_cast<int>(args.number()), 1, 100000);
    } else if (a == "--warmup") {
      c.warmup = std::clamp(static_cast<int>(args.number()), 0, 100000);
    } else if (a == "--small-tensors") {
      c.small_tensors = static_cast<std::size_t>(args.number());
      sized_small = true;
    } else if (a == "--large-mib") {
      c.large_mib = args.number();
      sized_large = true;
    } else if (a == "--seed") {
      c.seed = static_cast<std::uint64_t>(args.number());
    } else {
      args.unknown();
    }
  }
  if (c.quick) {
    if (!sized_small) c.small_tensors = 64;
    if (!sized_large) c.large_mib = 0.5;
    c.warmup = std::min(c.warmup, 1);
    c.iters = std::min(c.iters, 5);
  }
  return c;
}

// ---- the workloads: every item a pure function of (seed, workload, rank)
// -----------------------------------

using redist::bench::mix;
std::uint64_t mix(std::uint64_t a, std::uint64_t b) { return mix(mix(a) ^ b); }

host_tensor tensor(dtype type, std::vector<std::int64_t> shape, std::uint64_t key) {
  auto t = host_tensor::uninitialized(type, std::move(shape));
  auto* p = static_cast<std::byte*>(t.data());
  for (std::size_t i = 0; i < t.nbytes(); i += 8) {
    std::uint64_t word = mix(key, i);
    if (type == dtype::boolean) word &= 0x0101010101010101ull;
    std::memcpy(p + i, &word, std::min<std::size_t>(8, t.nbytes() - i));
  }
  return t;
}

// {"input_ids": i64 [n], "attention": {"mask": bool [n], "positions": i32 [n]}, "features": [tiny tensors]}:
// n of 8-39 tokens, and tiny tensors of 1-16 elements of varying dtypes.
item small_item(const config& c, int r) {
  const std::uint64_t key = mix(c.seed, 1000 + static_cast<std::uint64_t>(r));
  const auto n = static_cast<std::int64_t>(8 + mix(key, 1) % 32);
  item::fields attention;
  attention.push_back({"mask", tensor(dtype::boolean, {n}, mix(key, 2))});
  attention.push_back({"positions", tensor(dtype::i32, {n}, mix(key, 3))});
  item::list features;
  const dtype types[] = {dtype::f32, dtype::i64, dtype::bf16, dtype::i32, dtype::u8};
  for (std::size_t i = 0; i < c.small_tensors; ++i) {
    const std::uint64_t h = mix(key, 100 + i);
    features.push_back(tensor(types[h % 5], {static_cast<std::int64_t>(1 + (h >> 8) % 16)}, h));
  }
  item::fields f;
  f.push_back({"input_ids", tensor(dtype::i64, {n}, mix(key, 4))});
  f.push_back({"attention", std::move(attention)});
  f.push_back({"features", std::move(features)});
  return f;
}

// The same record with n tokens (15 bytes each) making a fifth of the bytes and four f32 images [3, h, 256]
// the rest, in all about `large_mib` MiB; sizes vary by a few percent between ranks.
item large_item(const config& c, int r) {
  const std::uint64_t key = mix(c.seed, 2000 + static_cast<std::uint64_t>(r));
  const double bytes =
      c.large_mib * (1 << 20) * (0.95 + 0.1 * static_cast<double>(mix(key, 1) % 1000) / 1000);
  const auto n = std::max<std::int64_t>(1, static_cast<std::int64_t>(bytes * 0.2 / 15));
  const auto h = std::max<std::int64_t>(1, static_cast<std::int64_t>(bytes * 0.8 / 4 / (4 * 3 * 256)));
  item::fields attention;
  attention.push_back({"mask", tensor(dtype::boolean, {n}, mix(key, 2))});
  attention.push_back({"positions", tensor(dtype::i32, {n}, mix(key, 3))});
  item::list images;
  for (std::uint64_t i = 0; i < 4; ++i) images.push_back(tensor(dtype::f32, {3, h, 256}, mix(key, 10 + i)));
  item::fields f;
  f.push_back({"input_ids", tensor(dtype::i64, {n}, mix(key, 4))});
  f.push_back({"attention", std::move(attention)});
  f.push_back({"images", std::move(images)});
  return f;
}

std::size_t item_bytes(const item& x) {
  std::size_t n = 0;
  x.for_each_tensor([&](const host_tensor& t) { n += t.nbytes(); });
  return n;
}

// Structure and bytes, to compare a result with its expectation.
void describe(const item& x, std::string& s, std::vector<std::byte>& bytes) {
  if (x.is_tensor()) {
    s += std::string(redist::name(x.tensor().dtype())) + "[";
    for (auto e : x.tensor().shape()) s += std::to_string(e) + ",";
    s += "]";
    const auto b = x.tensor().bytes();
    bytes.insert(bytes.end(), b.begin(), b.end());
  } else if (x.is_list()) {
    s += "(";
    for (const auto& c : x.items()) describe(c, s, bytes);
    s += ")";
  } else {
    s += "{";
    for (const auto& f : x.named()) {
      s += f.name + "=";
      describe(f.value, s, bytes);
    }
    s += "}";
  }
}

bool same(const item& a, const item& b) {
  std::string sa, sb;
  std::vector<std::byte> ba, bb;
  describe(a, sa, ba);
  describe(b, sb, bb);
  return sa == sb && ba == bb;
}

// ---- the hand-written scatter
// -------------------------------------------------------------------------------

int as_int(std::size_t n) {
  if (n > static_cast<std::size_t>(INT32_MAX)) {
    std::fprintf(stderr, "bench_dispatch: %zu bytes exceed an MPI count; use smaller items\n", n);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return static_cast<int>(n);
}

item hand_scatter(const std::vector<item>& items, int root, MPI_Comm comm) {
  int me = 0, P = 1;
  MPI_Comm_rank(comm, &me);
  MPI_Comm_size(comm, &P);
  const auto n = static_cast<std::size_t>(P);
  // Buffers that are written whole are not zeroed first (std::make_unique_for_overwrite): a careful user's.
  std::vector<std::byte> schemas;
  std::unique_ptr<std::byte[]> data;
  std::vector<std::uint64_t> sizes;  // per rank: schema bytes, data bytes
  std::vector<int> schema_counts, schema_displs, data_counts, data_displs;
  if (me == root) {
    sizes.resize(2 * n);
    schema_counts.resize(n);
    schema_displs.resize(n);
    data_counts.resize(n);
    data_displs.resize(n);
    std::size_t total = 0;
    for (std::size_t r = 0; r < n; ++r) {
      const auto s = redist::encode_schema(items[r]);
      schema_displs[r] = as_int(schemas.size());
      schemas.insert(schemas.end(), s.begin(), s.end());
      schema_counts[r] = as_int(s.size());
      data_displs[r] = as_int(total);
      data_counts[r] = as_int(item_bytes(items[r]));
      total += static_cast<std::size_t>(data_counts[r]);
      sizes[2 * r] = s.size();
      sizes[2 * r + 1] = static_cast<std::uint64_t>(data_counts[r]);
    }
    data = std::make_unique_for_overwrite<std::byte[]>(total);
    std::byte* at = data.get();
    for (const auto& x : items)
      x.for_each_tensor([&](const host_tensor& t) {
        if (t.nbytes() != 0) std::memcpy(at, t.data(), t.nbytes());
        at += t.nbytes();
      });
  }
  std::uint64_t mine[2] = {};
  MPI_Scatter(sizes.data(), 2, MPI_UINT64_T, mine, 2, MPI_UINT64_T, root, comm);
  std::vector<std::byte> schema(static_cast<std::size_t>(mine[0]));
  MPI_Scatterv(schemas.data(), schema_counts.data(), schema_displs.data(), MPI_BYTE, schema.data(),
               as_int(schema.size()), MPI_BYTE, root, comm);
  item x = redist::decode_schema<host_tensor>(schema);
  const auto in = std::make_unique_for_overwrite<std::byte[]>(static_cast<std::size_t>(mine[1]));
  MPI_Scatterv(data.get(), data_counts.data(), data_displs.data(), MPI_BYTE, in.get(),
               as_int(static_cast<std::size_t>(mine[1])), MPI_BYTE, root, comm);
  const std::byte* at = in.get();
  x.for_each_tensor([&](host_tensor& t) {
    if (t.nbytes() != 0) std::memcpy(t.data(), at, t.nbytes());
    at += t.nbytes();
  });
  return x;
}

// ---- the methods
// --------------------------------------------------------------------------------------------

constexpr std::size_t method_count = 4;
constexpr const char* method_names[method_count] = {"dispatch", "hand-scatterv", "dispatch, all packed",
                                                    "dispatch, none packed"};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int me = 0, P = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  const config c = parse(argc, argv);
  MPI_Comm world = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &world);
  const redist::bench::node_load node = redist::bench::node_load_of(world, me);
  bool failed = false;
  try {
    const redist::mpi_communicator comm(world);
    const int root = 0;
    if (me == 0) {
      std::printf("# bench_dispatch: %d ranks, %d on this node of %u cores%s\n", P, node.ranks, node.cores,
                  node.oversubscribed() ? " -- OVERSUBSCRIBED: timings are CPU-bound and noisy" : "");
      std::printf(
          "# root %d scatters one item per rank (its own too); time: median of %d iterations after %d "
          "warm-up, each the max over ranks after a barrier%s\n",
          root, c.iters, c.warmup, c.quick ? "; QUICK configuration" : "");
      std::printf(
          "# dispatch: redist::dispatch (default pack_below %zu B); hand-scatterv: encode_schema per "
          "rank, MPI_Scatter of sizes, MPI_Scatterv of schemas, pack, MPI_Scatterv of data, "
          "decode_schema, unpack\n",
          redist::dispatch_options{}.pack_below);
      std::printf("# ratio: dispatch-row time / hand-scatterv time (below 1: dispatch is faster)\n");
      redist::bench::print_counts_legend(me);
      std::printf("#\n");
      std::printf("# %-8s %9s %10s %-22s %11s %8s %6s\n", "workload", "tensors", "bytes/rank", "method",
                  "time(us)", "ratio", "#wrong");
    }
    for (const std::string workload : {"small", "large"}) {
      auto make = [&](int r) { return workload == "small" ? small_item(c, r) : large_item(c, r); };
      std::vector<item> items;
      if (me == root)
        for (int r = 0; r < P; ++r) items.push_back(make(r));
      const item expected = make(me);
      std::size_t tensors = 0;
      expected.for_each_tensor([&](const host_tensor&) { ++tensors; });
      const std::size_t bytes = item_bytes(expected);

      const redist::dispatch_options all_packed{.pack_below = SIZE_MAX}, none_packed{.pack_below = 0};
      const std::array<std::function<item()>, method_count> run = {
          [&] { return redist::dispatch(comm, items, root); },
          [&] { return hand_scatter(items, root, world); },
          [&] { return redist::dispatch(comm, items, root, all_packed); },
          [&] { return redist::dispatch(comm, items, root, none_packed); }};

      std::array<long long, method_count> wrong;
      wrong.fill(-1);
      if (c.check) {
        for (std::size_t m = 0; m < method_count; ++m) {
          long long w = same(run[m](), expected) ? 0 : 1;
          MPI_Allreduce(&w, &wrong[m], 1, MPI_LONG_LONG, MPI_SUM, world);
          failed = failed || wrong[m] != 0;
        }
      }
      std::array<std::function<void()>, method_count> timed;
      for (std::size_t m = 0; m < method_count; ++m) timed[m] = [&, m] { (void)run[m](); };
      // Rotating the order spreads what one method leaves behind (the allocator's state, caches) over all
      // alike.
      const auto times = redist::bench::time_medians<method_count>(c.warmup, c.iters, world, timed,
                                                                   redist::bench::method_order::rotating);
      if (me == 0) {
        for (std::size_t m = 0; m < method_count; ++m) {
          char ratio[24] = "";
          if (m != 1 && times[1] > 0) std::snprintf(ratio, sizeof ratio, "%.2f", times[m] / times[1]);
          char w[24] = "-";
          if (wrong[m] >= 0) std::snprintf(w, sizeof w, "%lld", wrong[m]);
          std::printf("  %-8s %9zu %10zu %-22s %11.1f %8s %6s\n", workload.c_str(), tensors, bytes,
                      method_names[m], times[m] * 1e6, ratio, w);
        }
        for (std::size_t m = 0; m < method_count; ++m)
          if (m != 1 && times[1] > 0)
            redist::bench::say_ratio(me, "bench_dispatch",
                                     workload + ':' + method_names[m] + "/" + method_names[1],
                                     times[m] / times[1]);
      }
      // Counts per call (bench_counts.hpp), against the bytes of this rank's item.
      for (std::size_t m = 0; m < method_count; ++m)
        redist::bench::print_counts(me, workload + " " + method_names[m],
                                    redist::bench::count_calls(world, timed[m], bytes));
    }
    if (me == 0 && c.check)
      std::printf("# check: %s\n", failed ? "WRONG RESULTS" : "every rank's result verified byte for byte");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dispatch: rank %d: %s\n", me, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int ok = failed ? 0 : 1;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_LAND, world);
  MPI_Comm_free(&world);
  MPI_Finalize();
  return ok ? 0 : 1;
}
