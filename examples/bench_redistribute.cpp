// Benchmark of redist::redistribute(), nccl-tests style: the one-call form (one-hop plan, byte staging), new
// or into a kept result (with and without end-to-end checksums), against hand-written MPI_Alltoallv code
// moving the same bytes (packing, exchanging and unpacking into the consumer's order, buffers kept or
// allocated per call) and against gather-scatter with float32 staging (the reference system's path). Prints
// median times (max over ranks), algbw, busbw, the ratios, #wrong (with
// --check every byte is verified) and each rank's peak memory next to its payload and the staging budget.
//
//   mpirun -np 8 ./example_bench_redistribute --check              the full benchmark, every result verified
//   mpirun -np 8 ./example_bench_redistribute --check --breakdown  plus where redistribute's time goes
//   mpirun -np 2 ./example_bench_redistribute                      no arguments: --quick --check --breakdown,
//                                                                  what CTest runs (seconds, even under ASan)
// More: --samples N (per rank, 256), --mean-tokens X (1000), --sigma X (1), --iters N (10), --warmup N (2),
// --budget BYTES (staging budget, redistribute_options' default), --seed N (1), --quick (8 samples per rank
// of 64 tokens on average, 1 warm-up + 3 timed iterations). Exits non-zero when a byte is wrong, when the
// hand-written exchange and redistribute() would move different byte counts, or on any error; targets missed
// are reported, not failed.
#include <mpi.h>

#if __has_include(<malloc.h>)
#include <malloc.h>  // malloc_trim (glibc)
#endif
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <numbers>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "bench_common.hpp"
#include "bench_counts.hpp"
#include "bench_workload.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/detail/crc32c.hpp"
#include "redist/redistribute.hpp"

namespace {

using redist::dtype;
using redist::sample_id;
using batch = redist::sequence_batch<>;
using redist::bench::median;
using redist::bench::say;

// ---- configuration ----------------------------------------------------------------------------------------

struct config {
  std::size_t samples = 256;  // per rank, on average
  double mean_tokens = 1000;
  double sigma = 1;
  int warmup = 2;
  int iters = 10;
  std::size_t budget = redist::redistribute_options{}.max_staging_bytes;
  std::uint64_t seed = 1;
  bool check = false;
  bool breakdown = false;
  bool quick = false;
};

config parse(int argc, char** argv) {
  redist::bench::command_line args(argc, argv, "bench_redistribute",
                                   "[--check] [--breakdown] [--quick] [--samples N] [--mean-tokens X] "
                                   "[--sigma X] [--iters N] [--warmup N] [--budget BYTES] [--seed N]",
                                   "--quick --check --breakdown");
  config c;
  if (args.empty()) {
    c.quick = c.check = c.breakdown = true;
  }
  bool sized = false;
  while (args.next(c.check, c.quick)) {
    const std::string_view a = args.option();
    auto integer = [&] { return args.integer(); };
    auto real = [&] { return args.positive(); };
    if (a == "--breakdown") {
      c.breakdown = true;
    } else if (a == "--samples") {
      c.samples = static_cast<std::size_t>(integer());
      sized = true;
    } else if (a == "--mean-tokens") {
      c.mean_tokens = real();
      sized = true;
    } else if (a == "--sigma") {
      c.sigma = real();
    } else if (a == "--iters") {
      c.iters = static_cast<int>(std::clamp<std::uint64_t>(integer(), 1, 100000));
    } else if (a == "--warmup") {
      c.warmup = static_cast<int>(std::min<std::uint64_t>(integer(), 100000));
    } else if (a == "--budget") {
      c.budget = static_cast<std::size_t>(std::max<std::uint64_t>(integer(), 1));
    } else if (a == "--seed") {
      c.seed = integer();
    } else {
      args.unknown();
    }
  }
  if (c.quick && !sized) {
    c.samples = 8;
    c.mean_tokens = 64;
  }
  if (c.quick) {
    c.warmup = std::min(c.warmup, 1);
    c.iters = std::min(c.iters, 3);
  }
  if (c.samples == 0) args.fail("--samples must be at least 1");
  return c;
}

// ---- the workload (bench_workload.hpp) -------------------------------------------------------------------

using redist::bench::bytes_per_token;
using redist::bench::expected_bytes;
using redist::bench::key_count;
using redist::bench::keys;
using redist::bench::layout;
using redist::bench::make_layout;
using redist::bench::tokens_of;

batch produce(const layout& l, int me, const config& c) {
  const auto& ids = l.produced[static_cast<std::size_t>(me)];
  redist::seqlen_table lens;
  std::vector<std::int64_t> tokens;
  std::int64_t total = 0;
  for (sample_id id : ids) {
    tokens.push_back(tokens_of(c, id));
    const std::int64_t one[] = {tokens.back()};
    lens.push_back(one);
    total += tokens.back();
  }
  std::vector<batch::field> fields;
  for (std::size_t k = 0; k < key_count; ++k) {
    std::vector<std::int64_t> shape{total};
    for (auto e : keys[k].trailing()) shape.push_back(e);
    auto t = redist::host_tensor::uninitialized(keys[k].type, shape);
    auto* at = static_cast<std::byte*>(t.data());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      expected_bytes(c, ids[i], k, tokens[i], at);
      at += static_cast<std::size_t>(tokens[i]) * keys[k].row_bytes();
    }
    fields.push_back({keys[k].name, keys[k].type, keys[k].trailing(), lens, std::move(t)});
  }
  return batch(ids, std::move(fields));
}

std::size_t sample_bytes(const config& c, sample_id id) {
  return static_cast<std::size_t>(tokens_of(c, id)) * bytes_per_token();
}

// ---- checking ---------------------------------------------------------------------------------------------

// Samples of `got` that are not exactly sample `want[i]` (ids, keys, dtypes, shapes, seqlens and bytes).
std::size_t wrong_in_batch(const config& c, const batch& got, const std::vector<sample_id>& want) {
  if (got.size() != want.size()) return std::max(got.size(), want.size());
  std::size_t wrong = 0;
  std::vector<std::byte> expect;
  if (got.fields().size() != key_count) return want.size();
  for (const auto& key : keys)
    if (!got.has_key(key.name) || got.at(key.name).dtype != key.type ||
        got.at(key.name).trailing_shape != key.trailing())
      return want.size();
  for (std::size_t i = 0; i < want.size(); ++i) {
    bool ok = got.ids()[i] == want[i];
    const std::int64_t tokens = tokens_of(c, want[i]);
    for (std::size_t k = 0; k < key_count && ok; ++k) {
      const auto lens = got.seqlens(keys[k].name, i);
      ok = lens.size() == 1 && lens[0] == tokens;
      const auto range = got.sample_bytes(keys[k].name, i);
      expect.resize(static_cast<std::size_t>(tokens) * keys[k].row_bytes());
      ok = ok && range.size == expect.size();
      if (!ok) break;
      expected_bytes(c, want[i], k, tokens, expect.data());
      const auto* data = static_cast<const std::byte*>(got.data(keys[k].name).data());
      ok = expect.empty() || std::memcmp(data + range.offset, expect.data(), expect.size()) == 0;
    }
    wrong += ok ? 0 : 1;
  }
  return wrong;
}

// ---- the hand-written exchange ----------------------------------------------------------------------------

// What a hand-written code knows of its layout before it runs: the pieces it packs, in send-buffer order
// (per destination rank, per key, the destination's ids in its order), and the byte counts of one
// MPI_Alltoallv. Without `self`, samples a rank wants from itself stay where they are: only bytes that cross
// ranks move, exactly those redistribute() moves. With `self`, they go through the MPI_Alltoallv too, so
// that the receive buffer holds every sample the rank wants, as redistribute()'s result does.
struct hand_plan {
  bool self = false;
  struct piece {
    const std::byte* src;
    std::size_t bytes;
  };
  std::vector<piece> pack;
  std::vector<int> send_counts, send_displs, recv_counts, recv_displs;
  std::size_t send_bytes = 0, recv_bytes = 0;
};

int as_count(std::size_t n) {
  if (n > static_cast<std::size_t>(INT32_MAX)) {
    std::fprintf(stderr, "bench_redistribute: %zu bytes exceed an MPI count; use fewer samples\n", n);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return static_cast<int>(n);
}

hand_plan make_hand_plan(const layout& l, const batch& local, int me, const config& c, bool self) {
  const std::size_t P = l.wanted.size();
  hand_plan h;
  h.self = self;
  h.send_counts.assign(P, 0);
  h.send_displs.assign(P, 0);
  h.recv_counts.assign(P, 0);
  h.recv_displs.assign(P, 0);
  for (std::size_t d = 0; d < P; ++d) {
    h.send_displs[d] = as_count(h.send_bytes);
    if (static_cast<int>(d) == me && !self) continue;
    for (std::size_t k = 0; k < key_count; ++k) {
      const auto* base = static_cast<const std::byte*>(local.data(keys[k].name).data());
      for (sample_id id : l.wanted[d]) {
        if (l.owner[id] != me) continue;
        const auto range = local.sample_bytes(keys[k].name, *local.find(id));
        if (!h.pack.empty() && h.pack.back().src + h.pack.back().bytes == base + range.offset)
          h.pack.back().bytes += range.size;
        else
          h.pack.push_back({base + range.offset, range.size});
        h.send_bytes += range.size;
      }
    }
    h.send_counts[d] = as_count(h.send_bytes - static_cast<std::size_t>(h.send_displs[d]));
  }
  for (std::size_t s = 0; s < P; ++s) {
    h.recv_displs[s] = as_count(h.recv_bytes);
    if (static_cast<int>(s) == me && !self) continue;
    for (sample_id id : l.wanted[static_cast<std::size_t>(me)])
      if (l.owner[id] == static_cast<int>(s)) h.recv_bytes += sample_bytes(c, id);
    h.recv_counts[s] = as_count(h.recv_bytes - static_cast<std::size_t>(h.recv_displs[s]));
  }
  return h;
}

std::unique_ptr<std::byte[]> hand_pack(const hand_plan& h) {
  std::unique_ptr<std::byte[]> send(new std::byte[h.send_bytes]);
  std::byte* at = send.get();
  for (const auto& p : h.pack) {
    std::memcpy(at, p.src, p.bytes);
    at += p.bytes;
  }
  return send;
}

std::unique_ptr<std::byte[]> hand_exchange(const hand_plan& h, const std::byte* send, MPI_Comm comm) {
  std::unique_ptr<std::byte[]> recv(new std::byte[h.recv_bytes]);
  MPI_Alltoallv(send, h.send_counts.data(), h.send_displs.data(), MPI_BYTE, recv.get(), h.recv_counts.data(),
                h.recv_displs.data(), MPI_BYTE, comm);
  return recv;
}

std::unique_ptr<std::byte[]> hand_written(const hand_plan& h, MPI_Comm comm) {
  const auto send = hand_pack(h);
  return hand_exchange(h, send.get(), comm);
}

// The receive buffer holds, per source rank (ascending; this rank left out unless h.self), per key, this
// rank's wanted ids from that source in its order.
std::size_t wrong_in_hand(const config& c, const layout& l, int me, const hand_plan& h,
                          const std::byte* got) {
  const auto& want = l.wanted[static_cast<std::size_t>(me)];
  std::vector<char> bad(l.owner.size(), 0);
  std::vector<std::byte> expect;
  std::size_t at = 0;
  for (std::size_t s = 0; s < l.wanted.size(); ++s) {
    if (static_cast<int>(s) == me && !h.self) continue;
    for (std::size_t k = 0; k < key_count; ++k)
      for (sample_id id : want) {
        if (l.owner[id] != static_cast<int>(s)) continue;
        const std::int64_t tokens = tokens_of(c, id);
        expect.resize(static_cast<std::size_t>(tokens) * keys[k].row_bytes());
        expected_bytes(c, id, k, tokens, expect.data());
        if (at + expect.size() > h.recv_bytes || std::memcmp(got + at, expect.data(), expect.size()) != 0)
          bad[id] = 1;
        at += expect.size();
      }
  }
  return static_cast<std::size_t>(std::count(bad.begin(), bad.end(), 1)) + (at != h.recv_bytes ? 1 : 0);
}

// The hand-written code a consumer that reorders writes, and the targets' baseline: pack, one MPI_Alltoallv
// of the bytes that cross ranks, then every wanted sample copied into its place in per-key output buffers in
// the consumer's order: from the receive buffer, or from the rank's own batch for the samples it holds.
// Adjacent copies are merged, as a hand-written code that knows its layout would. With `reuse` it keeps its
// send, receive and output buffers between calls; without, it allocates them per call.
struct unpacked_plan {
  hand_plan xfer;                      // the remote-only exchange
  std::vector<std::size_t> out_bytes;  // per key
  struct move {
    std::size_t key;
    const std::byte* own;  // the source in this rank's batch, or null: recv_at in the receive buffer
    std::size_t recv_at, out_at, bytes;
  };
  std::vector<move> moves;
};

unpacked_plan make_unpacked_plan(const layout& l, const batch& local, int me, const config& c) {
  unpacked_plan u;
  u.xfer = make_hand_plan(l, local, me, c, false);
  const auto& want = l.wanted[static_cast<std::size_t>(me)];
  // Where each (id, key) from another rank sits in the receive buffer: per source, per key, in wanted order.
  std::vector<std::vector<std::size_t>> recv_at(key_count, std::vector<std::size_t>(l.owner.size(), 0));
  std::size_t at = 0;
  for (std::size_t s = 0; s < l.wanted.size(); ++s) {
    if (static_cast<int>(s) == me) continue;
    for (std::size_t k = 0; k < key_count; ++k)
      for (sample_id id : want)
        if (l.owner[id] == static_cast<int>(s)) {
          recv_at[k][id] = at;
          at += static_cast<std::size_t>(tokens_of(c, id)) * keys[k].row_bytes();
        }
  }
  u.out_bytes.assign(key_count, 0);
  for (std::size_t k = 0; k < key_count; ++k) {
    const auto* base = static_cast<const std::byte*>(local.data(keys[k].name).data());
    for (sample_id id : want) {
      const std::size_t bytes = static_cast<std::size_t>(tokens_of(c, id)) * keys[k].row_bytes();
      unpacked_plan::move m{k, nullptr, 0, u.out_bytes[k], bytes};
      if (l.owner[id] == me)
        m.own = base + local.sample_bytes(keys[k].name, *local.find(id)).offset;
      else
        m.recv_at = recv_at[k][id];
      u.out_bytes[k] += bytes;
      if (!u.moves.empty()) {
        auto& last = u.moves.back();
        const bool both_own = last.own != nullptr && m.own != nullptr && last.own + last.bytes == m.own;
        const bool both_recv =
            last.own == nullptr && m.own == nullptr && last.recv_at + last.bytes == m.recv_at;
        if (last.key == k && last.out_at + last.bytes == m.out_at && (both_own || both_recv)) {
          last.bytes += bytes;
          continue;
        }
      }
      u.moves.push_back(m);
    }
  }
  return u;
}

struct unpacked_buffers {
  std::unique_ptr<std::byte[]> send, recv;
  std::vector<std::unique_ptr<std::byte[]>> out;
};

void allocate_unpacked(const unpacked_plan& u, unpacked_buffers& b) {
  b.send.reset(new std::byte[u.xfer.send_bytes]);
  b.recv.reset(new std::byte[u.xfer.recv_bytes]);
  b.out.clear();
  for (std::size_t k = 0; k < key_count; ++k) b.out.emplace_back(new std::byte[u.out_bytes[k]]);
}

void hand_unpacked(const unpacked_plan& u, unpacked_buffers& b, bool reuse, MPI_Comm comm) {
  if (!reuse || !b.send) allocate_unpacked(u, b);
  std::byte* at = b.send.get();
  for (const auto& p : u.xfer.pack) {
    std::memcpy(at, p.src, p.bytes);
    at += p.bytes;
  }
  MPI_Alltoallv(b.send.get(), u.xfer.send_counts.data(), u.xfer.send_displs.data(), MPI_BYTE, b.recv.get(),
                u.xfer.recv_counts.data(), u.xfer.recv_displs.data(), MPI_BYTE, comm);
  for (const auto& m : u.moves)
    std::memcpy(b.out[m.key].get() + m.out_at, m.own != nullptr ? m.own : b.recv.get() + m.recv_at, m.bytes);
}

// Samples whose bytes in the unpacked output differ from what they must be.
std::size_t wrong_in_unpacked(const config& c, const layout& l, int me, const unpacked_buffers& b) {
  std::vector<std::byte> expect;
  std::vector<char> bad(l.owner.size(), 0);
  for (std::size_t k = 0; k < key_count; ++k) {
    std::size_t at = 0;
    for (sample_id id : l.wanted[static_cast<std::size_t>(me)]) {
      const std::int64_t tokens = tokens_of(c, id);
      expect.resize(static_cast<std::size_t>(tokens) * keys[k].row_bytes());
      expected_bytes(c, id, k, tokens, expect.data());
      if (!expect.empty() && std::memcmp(b.out[k].get() + at, expect.data(), expect.size()) != 0) bad[id] = 1;
      at += expect.size();
    }
  }
  return static_cast<std::size_t>(std::count(bad.begin(), bad.end(), 1));
}

// ---- redistribute() through the lower-level API, as the one-call form does it -----------------------------

struct lowered {
  redist::catalog cat;
  redist::plan plan;
  std::vector<std::string> keys;
  std::vector<batch> metas;
};

// Phase 1 of the one-call form: every rank's metadata and wanted ids, allgathered.
std::pair<std::vector<std::byte>, std::vector<std::size_t>> gather_requests(
    const redist::mpi_communicator& comm, const batch& local, const std::vector<sample_id>& wanted) {
  local.validate();
  const auto blob = redist::detail::encode_request(redist::encode_metadata(local), wanted);
  std::vector<std::size_t> counts;
  auto all = redist::allgatherv(comm, blob, &counts);
  return {std::move(all), std::move(counts)};
}

// Phase 2: decode, catalog, tracker, one-hop plan.
lowered make_plan(const std::vector<std::byte>& all, const std::vector<std::size_t>& counts) {
  lowered out;
  auto& metas = out.metas;
  std::vector<redist::id_list> wants;
  std::vector<redist::detail::request> requests;
  std::size_t at = 0;
  for (std::size_t r = 0; r < counts.size(); at += counts[r], ++r) {
    const auto request = redist::detail::decode_request(std::span(all).subspan(at, counts[r]), r);
    metas.push_back(redist::decode_metadata(request.metadata));
    out.cat.add(metas.back(), static_cast<int>(r));
    requests.push_back(request);
  }
  std::size_t held = 0;
  for (const auto& m : metas) held += m.size();
  for (std::size_t r = 0; r < requests.size(); ++r)
    wants.push_back(redist::detail::wanted_ids(requests[r], r, held));
  for (const auto& k : out.cat.keys()) out.keys.push_back(k.name);
  const auto tracker = redist::storage_tracker::from_batches(metas);
  out.plan = redist::plan_all_to_all(tracker, wants, out.keys);
  return out;
}

// Bytes the plan moves between ranks, all ranks together.
std::uint64_t plan_wire_bytes(const lowered& l) {
  std::uint64_t total = 0;
  for (const auto& stage : l.plan.stages)
    for (const auto& s : stage)
      if (const auto* a = std::get_if<redist::all_to_all_step>(&s)) {
        for (const auto& r : a->routes) {
          const auto& p = a->payloads[r.payload];
          const auto key = *l.cat.find_key(a->keys[p.key]);
          for (sample_id id : p.ids) total += l.cat.bytes(id, key);
        }
      }
  return total;
}

// ---- timing and memory ------------------------------------------------------------------------------------

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM"); 0 where there is no such file.
std::size_t proc_status_bytes(std::string_view field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, field.size(), field) == 0 && line.size() > field.size() && line[field.size()] == ':')
      return std::strtoull(line.c_str() + field.size() + 1, nullptr, 10) * 1024;
  return 0;
}

// Resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); false where that is not possible.
bool reset_peak_rss() {
#if defined(__GLIBC__)
  malloc_trim(0);  // hand freed heap memory back first, so that it does not count as this run's
#endif
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out) && proc_status_bytes("VmHWM") != 0;
}

std::size_t max_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<std::size_t>(u.ru_maxrss) * 1024;  // KiB on Linux
}

// ---- results ----------------------------------------------------------------------------------------------

struct memory_row {
  double peak_over_baseline = 0;  // MiB, max over ranks
  double payload = 0;             // MiB, max over ranks
  double excess = 0;              // MiB, max over ranks of (peak - baseline) - payload
};

struct row {
  std::string layout, order, method;
  double time = 0;
  long long wrong = -1;  // -1: not checked
  memory_row mem;
  redist::bench::call_counts counts;
};

// 0 and 1 are redistribute's; 2 to 5 hand-written, each the baseline of one of them (see the header); 6 the
// reference system's path; 7 redistribute_into with end-to-end checksums.
constexpr const char* method_names[] = {"redistribute",        "redistribute_into", "hand-unpacked",
                                        "hand-unpacked-alloc", "hand-alltoallv",    "hand-alltoallv+self",
                                        "gather-scatter-f32",  "into+checksums"};
constexpr std::size_t method_count = 8;
// The method each row's ratio compares with: redistribute-row time / this row's (the last two: inverted,
// this row's time / that row's).
constexpr std::size_t compared_with[] = {0, 0, 1, 0, 0, 0, 0, 1};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int me = 0, P = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  const config c = parse(argc, argv);
  MPI_Comm world = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &world);
  MPI_Barrier(world);
  const std::size_t baseline = proc_status_bytes("VmRSS");  // before any data exists
  bool peak_resettable = reset_peak_rss();
  {
    int all = peak_resettable ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_LAND, world);
    peak_resettable = all != 0;
  }

  const redist::bench::node_load node = redist::bench::node_load_of(world, me);

  bool failed = false;
  std::vector<row> rows;
  std::vector<std::string> notes;
  try {
    const redist::mpi_communicator comm(world);
    const redist::redistribute_options one_hop{.max_staging_bytes = c.budget};
    const redist::redistribute_options gather_scatter{.max_staging_bytes = c.budget,
                                                      .pattern = redist::plan_pattern::gather_scatter};
    say(me, "# bench_redistribute: %d ranks, %d on this node of %u cores%s\n", P, node.ranks, node.cores,
        node.oversubscribed() ? " -- OVERSUBSCRIBED: ranks share cores, timings are CPU-bound and noisy"
                              : "");
    say(me,
        "# workload: %zu samples per rank on average, lognormal tokens per sample (mean %g, sigma %g); keys "
        "hidden bf16[16], logits bf16, tokens i64 (%zu bytes per token)%s\n",
        c.samples, c.mean_tokens, c.sigma, bytes_per_token(), c.quick ? "; QUICK configuration" : "");
    say(me, "# time: median of %d iterations after %d warm-up, each the max over ranks after a barrier\n",
        c.iters, c.warmup);
    say(me,
        "# size: payload per rank (all wanted bytes / ranks, own samples included: nccl-tests' alltoall "
        "size); algbw = size / time; busbw = algbw * (n-1)/n; wire: bytes crossing ranks, all ranks\n");
    say(me,
        "# methods: redistribute = one-call form, one-hop, byte staging, a new result each call; "
        "redistribute_into = the same into the previous call's result, with a kept staging workspace and "
        "plan cache; "
        "hand-unpacked = hand-written pack + one MPI_Alltoallv of the bytes that cross ranks + every wanted "
        "sample copied into per-key buffers in the consumer's order (its own from its batch), buffers kept "
        "(the baseline of redistribute_into); hand-unpacked-alloc = the same allocating its buffers per call "
        "(the baseline of redistribute); hand-alltoallv+self = packing + one MPI_Alltoallv of every wanted "
        "byte into one buffer, no unpacking; hand-alltoallv = the same without the samples a rank wants from "
        "itself; gather-scatter-f32 = redistribute<float32_staging>, gather_scatter; into+checksums = "
        "redistribute_into with redistribute_options::checksums (CRC-32C of every payload held and "
        "arrived)\n");
    say(me,
        "# ratio: on the hand rows the redistribute row it is the baseline of (redistribute_into for "
        "hand-unpacked, else redistribute) / that row; on the gather-scatter-f32 row that row / "
        "redistribute; on the into+checksums row that row / redistribute_into; staging budget %zu bytes\n",
        c.budget);
    redist::bench::print_counts_legend(me);
    say(me, "#\n");
    say(me, "# %-10s %-8s %-19s %12s %12s %10s %11s %11s %6s %8s\n", "layout", "order", "method", "size(B)",
        "wire(B)", "time(ms)", "algbw(GB/s)", "busbw(GB/s)", "#wrong", "ratio");

    constexpr int phase_count = 8;
    struct breakdown_row {
      std::string layout;
      double t[phase_count];
      double one_call;
    };
    std::vector<breakdown_row> breakdowns;
    for (const std::string kind : {"blocks", "reordered", "skewed"}) {
      const layout l = make_layout(kind, P, c);
      const auto& wanted = l.wanted[static_cast<std::size_t>(me)];
      const batch local = produce(l, me, c);
      const hand_plan hand = make_hand_plan(l, local, me, c, false);
      const hand_plan hand_self = make_hand_plan(l, local, me, c, true);
      const unpacked_plan unpacked = make_unpacked_plan(l, local, me, c);
      unpacked_buffers kept, fresh;
      batch into_out;
      redist::workspace staging;
      redist::redistribute_options into_opts = one_hop;
      into_opts.staging = &staging;
      redist::plan_cache plans;
      into_opts.plans = &plans;
      batch crc_out;
      redist::workspace crc_staging;
      redist::plan_cache crc_plans;
      redist::redistribute_options crc_opts = one_hop;
      crc_opts.staging = &crc_staging;
      crc_opts.plans = &crc_plans;
      crc_opts.checksums = true;

      // Sizes: what the ranks want in all, and what crosses ranks, by the hand-written exchange and by the
      // plan redistribute() makes (computed the way its one-call form computes it).
      std::uint64_t payload = 0, my_payload = 0, hand_wire = hand.send_bytes;
      for (std::size_t r = 0; r < l.wanted.size(); ++r)
        for (sample_id id : l.wanted[r]) payload += sample_bytes(c, id);
      for (sample_id id : wanted) my_payload += sample_bytes(c, id);
      for (sample_id id : l.produced[static_cast<std::size_t>(me)]) my_payload += sample_bytes(c, id);
      MPI_Allreduce(MPI_IN_PLACE, &hand_wire, 1, MPI_UINT64_T, MPI_SUM, world);
      const lowered plan_once = [&] {
        auto [all, counts] = gather_requests(comm, local, wanted);
        return make_plan(all, counts);
      }();
      const std::uint64_t redist_wire = plan_wire_bytes(plan_once);
      if (redist_wire != hand_wire) {
        failed = true;
        notes.push_back(kind + ": redistribute's plan moves " + std::to_string(redist_wire) +
                        " bytes between ranks, the hand-written exchange " + std::to_string(hand_wire));
      }

      // Each method: one run (its result dropped, as in the timing) and one checked run.
      auto redistribute_once = [&] { return redist::redistribute(comm, local, wanted, one_hop); };
      auto into_once = [&] { redist::redistribute_into(comm, local, wanted, into_out, into_opts); };
      auto crc_once = [&] { redist::redistribute_into(comm, local, wanted, crc_out, crc_opts); };
      auto gather_scatter_once = [&] {
        return redist::redistribute<redist::float32_staging>(comm, local, wanted, gather_scatter);
      };
      const std::array<std::function<void()>, method_count> run = {
          [&] { redistribute_once(); },
          [&] { into_once(); },
          [&] { hand_unpacked(unpacked, kept, true, world); },
          [&] { hand_unpacked(unpacked, fresh, false, world); },
          [&] { hand_written(hand, world); },
          [&] { hand_written(hand_self, world); },
          [&] { gather_scatter_once(); },
          [&] { crc_once(); }};
      const std::array<std::function<std::size_t()>, method_count> wrong_in = {
          [&] { return wrong_in_batch(c, redistribute_once(), wanted); },
          [&] {
            into_once();
            return wrong_in_batch(c, into_out, wanted);
          },
          [&] {
            hand_unpacked(unpacked, kept, true, world);
            return wrong_in_unpacked(c, l, me, kept);
          },
          [&] {
            hand_unpacked(unpacked, fresh, false, world);
            return wrong_in_unpacked(c, l, me, fresh);
          },
          [&] { return wrong_in_hand(c, l, me, hand, hand_written(hand, world).get()); },
          [&] { return wrong_in_hand(c, l, me, hand_self, hand_written(hand_self, world).get()); },
          [&] { return wrong_in_batch(c, gather_scatter_once(), wanted); },
          [&] {
            crc_once();
            return wrong_in_batch(c, crc_out, wanted);
          }};

      std::array<long long, method_count> wrong;
      wrong.fill(-1);
      if (c.check) {
        std::array<long long, method_count> w{};
        for (std::size_t m = 0; m < method_count; ++m) w[m] = static_cast<long long>(wrong_in[m]());
        MPI_Allreduce(w.data(), wrong.data(), static_cast<int>(method_count), MPI_LONG_LONG, MPI_SUM, world);
        for (auto x : wrong) failed = failed || x != 0;
      }

      const auto times = redist::bench::time_medians<method_count>(c.warmup, c.iters, world, run,
                                                                   redist::bench::method_order::fixed);

      // Counts per call (bench_counts.hpp), each against the bytes of its own result on this rank: every
      // wanted sample, but the hand-alltoallv rows' receive buffers. gather-scatter-f32 casts in element
      // loops, which the copy counter does not see.
      std::size_t wanted_bytes = 0;
      for (sample_id id : wanted) wanted_bytes += sample_bytes(c, id);
      std::array<redist::bench::call_counts, method_count> counts;
      for (std::size_t m = 0; m < method_count; ++m)
        counts[m] = redist::bench::count_calls(
            world, run[m],
            m == 4   ? hand.recv_bytes
            : m == 5 ? hand_self.recv_bytes
                     : wanted_bytes,
            m == 6 ? redist::bench::copy_visibility::element_casts : redist::bench::copy_visibility::seen);

      // Peak memory of one run of each method, over the RSS before any data existed. The methods that keep
      // buffers between calls give them up before each run, so that none holds memory while another is
      // measured (and each kept method's run allocates them, as its first call does).
      auto give_up_kept = [&] {
        into_out = batch{};
        staging = redist::workspace{};
        plans.clear();
        crc_out = batch{};
        crc_staging = redist::workspace{};
        crc_plans.clear();
        kept = unpacked_buffers{};
        fresh = unpacked_buffers{};
      };
      std::array<memory_row, method_count> mem;
      for (std::size_t m = 0; m < method_count; ++m) {
        give_up_kept();
        MPI_Barrier(world);
        if (peak_resettable) reset_peak_rss();
        run[m]();
        const std::size_t peak = peak_resettable ? proc_status_bytes("VmHWM") : max_rss_bytes();
        const double mib = 1.0 / (1 << 20);
        const double over = static_cast<double>(peak - std::min(peak, baseline));
        double v[3] = {over * mib, static_cast<double>(my_payload) * mib,
                       (over - static_cast<double>(my_payload)) * mib};
        MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_DOUBLE, MPI_MAX, world);
        mem[m] = {v[0], v[1], v[2]};
      }

      const double size = static_cast<double>(payload) / P;
      const double factor = P > 1 ? static_cast<double>(P - 1) / P : 0;
      for (std::size_t m = 0; m < method_count; ++m) {
        // Hand-written rows: redistribute / this; the reference row: this / redistribute.
        char ratio[32] = "";
        if (m >= 2 && m <= 5 && times[m] > 0)
          std::snprintf(ratio, sizeof ratio, "%.2f", times[compared_with[m]] / times[m]);
        if (m >= 6 && times[compared_with[m]] > 0)
          std::snprintf(ratio, sizeof ratio, "%.2f", times[m] / times[compared_with[m]]);
        char wrong_text[24] = "-";
        if (wrong[m] >= 0) std::snprintf(wrong_text, sizeof wrong_text, "%lld", wrong[m]);
        const double algbw = times[m] > 0 ? size / times[m] / 1e9 : 0;
        // The reference path's wire bytes (float32, padded, twice across) are not the payload's: not shown.
        char wire[24] = "-";
        if (m != 6)
          std::snprintf(wire, sizeof wire, "%llu",
                        static_cast<unsigned long long>(m < 2 || m == 7 ? redist_wire : hand_wire));
        say(me, "  %-10s %-8s %-19s %12.0f %12s %10.3f %11.3f %11.3f %6s %8s\n", kind.c_str(),
            l.order.c_str(), method_names[m], size, wire, times[m] * 1e3, algbw, algbw * factor, wrong_text,
            ratio);
        rows.push_back({kind, l.order, method_names[m], times[m], wrong[m], mem[m], counts[m]});
      }
      for (std::size_t m = 0; m < method_count; ++m)
        redist::bench::print_counts(me, kind + " " + method_names[m], counts[m]);

      if (c.breakdown) {
        // The one-call form, phase by phase, each after a barrier, max over ranks; medians. 0 metadata
        // (validate, encode, allgatherv), 1 plan (decode, catalog, tracker, one-hop plan), 2 the pre-transfer
        // checks and plan fingerprint, 3 allocating the output batch, 4 the steps (the exchange: received
        // samples land in the output), 5 copying in the samples this rank held; hand-written: 6 pack,
        // 7 MPI_Alltoallv.
        std::vector<double> samples[phase_count];
        for (int i = 0; i < c.warmup + c.iters; ++i) {
          double t[phase_count] = {};
          auto phase = [&](int p, auto&& f) {
            MPI_Barrier(world);
            const double t0 = MPI_Wtime();
            f();
            t[p] = MPI_Wtime() - t0;
          };
          std::pair<std::vector<std::byte>, std::vector<std::size_t>> req;
          lowered low;
          redist::sample_store<> store;
          batch out;
          phase(0, [&] { req = gather_requests(comm, local, wanted); });
          phase(1, [&] { low = make_plan(req.first, req.second); });
          store.borrow(local);
          phase(2, [&] {
            redist::detail::check_before_transfer<redist::byte_staging>(me, P, store, low.plan, low.cat,
                                                                        one_hop, redist::host_space{});
            const auto h = redist::detail::plan_hash(low.plan);
            if (comm.allreduce_min(h) != comm.allreduce_max(h)) failed = true;
          });
          phase(3, [&] {
            redist::detail::reuse_taken taken{};
            out = redist::detail::make_output<redist::host_tensor>(low.cat, wanted, low.keys, low.metas,
                                                                   nullptr, taken);
          });
          std::optional<redist::detail::output_sink<redist::host_tensor>> sink;
          std::optional<
              redist::step_context<redist::mpi_communicator, redist::host_tensor, redist::byte_staging>>
              ctx;
          phase(4, [&] {
            sink.emplace(out, low.cat);
            ctx.emplace(comm, store, low.cat, one_hop, &*sink);
            for (const auto& stage : low.plan.stages)
              for (const auto& st : stage)
                std::visit(
                    [&](const auto& x) {
                      using step = std::decay_t<decltype(x)>;
                      redist::detail::pick_policy<step, redist::byte_staging>::type::run(*ctx, x);
                    },
                    st);
          });
          phase(5, [&] { sink->fill(store, comm.rank(), redist::host_space{}); });
          std::unique_ptr<std::byte[]> send;
          phase(6, [&] { send = hand_pack(hand); });
          phase(7, [&] { hand_exchange(hand, send.get(), world); });
          MPI_Allreduce(MPI_IN_PLACE, t, phase_count, MPI_DOUBLE, MPI_MAX, world);
          if (i >= c.warmup)
            for (int p = 0; p < phase_count; ++p) samples[p].push_back(t[p]);
          if (c.check && i == 0 && wrong_in_batch(c, out, wanted) != 0) failed = true;
        }
        breakdown_row b{kind, {}, times[0]};
        for (int p = 0; p < phase_count; ++p) b.t[p] = median(samples[p]);
        breakdowns.push_back(b);
      }
    }

    if (c.breakdown) {
      say(me,
          "#\n# breakdown of redistribute's one-call form, phase by phase through the lower-level API (each "
          "phase after a barrier, max over ranks, median; ms)\n# %-10s %9s %9s %9s %9s %9s %9s %9s %9s | %9s "
          "%9s %9s\n",
          "layout", "metadata", "plan", "checks", "output", "exchange", "own-copy", "sum", "one-call",
          "hand:pack", "alltoallv", "sum");
      for (const auto& b : breakdowns) {
        double sum = 0;
        for (int p = 0; p < 6; ++p) sum += b.t[p];
        say(me, "  %-10s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f | %9.3f %9.3f %9.3f\n",
            b.layout.c_str(), b.t[0] * 1e3, b.t[1] * 1e3, b.t[2] * 1e3, b.t[3] * 1e3, b.t[4] * 1e3,
            b.t[5] * 1e3, sum * 1e3, b.one_call * 1e3, b.t[6] * 1e3, b.t[7] * 1e3, (b.t[6] + b.t[7]) * 1e3);
      }
      say(me,
          "# metadata: validate + encode + allgatherv; plan: decode, catalog, tracker, plan_all_to_all; "
          "checks: the pre-transfer checks + plan fingerprint; output: allocating the returned batch; "
          "exchange: the plan's steps (a group of point-to-point transfers per large key, started together, "
          "into the "
          "output); own-copy: the samples this rank held, copied in\n");
    }

    // Memory: each method's peak RSS in one run, over the RSS before any data existed.
    say(me,
        "#\n# peak memory of one run (max over ranks; MiB): peak RSS - baseline RSS (before any data) "
        "against payload (the rank's input + output bytes) + staging budget (%.1f MiB)%s\n",
        static_cast<double>(c.budget) / (1 << 20),
        peak_resettable ? "" : " [peak RSS not resettable here: getrusage's max RSS of the whole run]");
    say(me, "# %-10s %-19s %12s %12s %16s %6s\n", "layout", "method", "peak-base", "payload",
        "peak-base-payload", "holds");
    bool memory_ok = true;
    for (const auto& r : rows) {
      const bool holds = r.mem.excess <= static_cast<double>(c.budget) / (1 << 20);
      memory_ok = memory_ok && holds;
      say(me, "  %-10s %-19s %12.2f %12.2f %16.2f %6s\n", r.layout.c_str(), r.method.c_str(),
          r.mem.peak_over_baseline, r.mem.payload, r.mem.excess, holds ? "yes" : "NO");
    }
    double whole[1] = {static_cast<double>(max_rss_bytes()) / (1 << 20)};
    MPI_Allreduce(MPI_IN_PLACE, whole, 1, MPI_DOUBLE, MPI_MAX, world);
    say(me,
        "# max RSS of the whole run (getrusage, max over ranks): %.2f MiB; baseline RSS of rank 0: "
        "%.2f MiB\n",
        whole[0], static_cast<double>(baseline) / (1 << 20));

    // Targets.
    auto find = [&](const std::string& layout, const char* method) {
      for (const auto& r : rows)
        if (r.layout == layout && r.method == method) return r.time;
      return 0.0;
    };
    say(me, "#\n# targets (ratios from this run)\n");
    // The baselines of the targets: the hand-written code that ends, like redistribute(), with every wanted
    // sample in per-key buffers in the consumer's order, its own samples copied locally, keeping its buffers
    // (against redistribute_into with a kept output and workspace) or allocating them per call (against
    // redistribute). The older baselines follow in parentheses.
    for (const std::string kind : {"blocks", "skewed", "reordered"}) {
      const double into = find(kind, "redistribute_into") / find(kind, "hand-unpacked");
      const double target = kind == "reordered" ? 1.25 : 1.10;
      const double alloc = find(kind, "redistribute") / find(kind, "hand-unpacked-alloc");
      say(me,
          "#   %-9s redistribute_into / hand-unpacked = %5.2f, target <= %.2f (%s order): %s; redistribute / "
          "hand-unpacked-alloc = %5.2f, target <= 1.10: %s  (redistribute / hand-alltoallv+self %.2f, / "
          "hand-alltoallv %.2f)\n",
          kind.c_str(), into, target, kind == "reordered" ? "reordered" : "arrival",
          into <= target ? "met" : "MISSED", alloc, alloc <= 1.10 ? "met" : "MISSED",
          find(kind, "redistribute") / find(kind, "hand-alltoallv+self"),
          find(kind, "redistribute") / find(kind, "hand-alltoallv"));
      redist::bench::say_ratio(me, "bench_redistribute", kind + ":redistribute_into/hand-unpacked", into);
      redist::bench::say_ratio(me, "bench_redistribute", kind + ":redistribute/hand-unpacked-alloc", alloc);
    }
    const double gs = find("skewed", "gather-scatter-f32") / find("skewed", "redistribute");
    const char* gs_verdict = P != 8 ? "(not 8 ranks)" : gs >= 10 ? "met" : "MISSED";
    say(me, "#   skewed    gather-scatter-f32 / redistribute = %5.2f, target >= 10 at 8 ranks: %s\n", gs,
        gs_verdict);
    redist::bench::say_ratio(me, "bench_redistribute", "skewed:gather-scatter-f32/redistribute", gs);
    for (const std::string kind : {"blocks", "skewed", "reordered"}) {
      const double crc = find(kind, "into+checksums") / find(kind, "redistribute_into");
      say(me, "#   %-9s into+checksums / redistribute_into = %5.2f, target <= 1.15 (CRC-32C %s): %s\n",
          kind.c_str(), crc, redist::detail::crc32c_in_hardware() ? "in hardware" : "by table",
          crc <= 1.15 ? "met" : "MISSED");
      redist::bench::say_ratio(me, "bench_redistribute", kind + ":into+checksums/redistribute_into", crc);
    }
    say(me, "#   peak memory <= payload + staging budget on every rank: %s\n", memory_ok ? "met" : "MISSED");
    // The counts' targets: the one-call form's collectives (the hand-written code's two, counts and data,
    // plus one), one copy at most of each payload byte beyond the transport's (all ranks' copies over all
    // ranks' results), and nothing allocated by a repeated redistribute_into with a kept result, workspace
    // and plan cache.
    auto counts_of = [&](const std::string& layout, const char* method) {
      for (const auto& r : rows)
        if (r.layout == layout && r.method == method) return r.counts;
      return redist::bench::call_counts{};
    };
    for (const std::string kind : {"blocks", "skewed", "reordered"}) {
      const auto one = counts_of(kind, "redistribute"), into = counts_of(kind, "redistribute_into");
      const double copied = std::max(one.copied_per_payload_byte_all, into.copied_per_payload_byte_all);
      say(me,
          "#   %-9s redistribute collectives %s per call, target <= 3: %s; copied %.2f B/B (all ranks), "
          "target <= 1: %s; redistribute_into allocated %s in %s per call (largest %s), target 0: %s\n",
          kind.c_str(), redist::bench::count_text(one.collective).c_str(),
          one.collective <= 3 ? "met" : "MISSED", copied, copied <= 1 ? "met" : "MISSED",
          redist::bench::bytes_text(into.allocated_bytes).c_str(),
          redist::bench::count_text(into.allocations).c_str(),
          redist::bench::bytes_text(into.largest_allocation).c_str(),
          into.allocations == 0 ? "met" : "MISSED");
    }
    for (const auto& n : notes) say(me, "# ERROR: %s\n", n.c_str());
    if (c.check) {
      long long total = 0;
      for (const auto& r : rows) total += r.wrong;
      say(me, "# check: %s\n", total == 0 ? "every byte of every method verified" : "WRONG BYTES");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_redistribute: rank %d: %s\n", me, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int ok = failed ? 0 : 1;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_LAND, world);
  MPI_Comm_free(&world);
  MPI_Finalize();
  return ok ? 0 : 1;
}
