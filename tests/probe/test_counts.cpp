// The counts of redist's ops that do not depend on the machine, asserted exactly: the collectives each op
// makes per call (the MPI probe), the payload bytes it copies locally and the allocations of a repeated call
// with kept buffers (the copy and allocation counter), on a communicator numbered backwards.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../mpi/mpi_test.hpp"
#include "copy_alloc_counter.hpp"
#include "mpi_probe.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/dispatch.hpp"
#include "redist/redistribute.hpp"
#include "redist/seqpar.hpp"
#include "redist/shard.hpp"

namespace {

namespace probe = redist::test::mpi_probe;
namespace counter = redist::test::copy_alloc_counter;
using redist::dtype;
using redist::host_tensor;
using redist::sample_id;

// ---- the collectives of one call of each op, as the code has them: update a constant with the op's code ---
// redistribute's one-call form: the agreement (an MPI_Allgather of fixed-size records carrying the outcome,
// the call's fingerprint and the size of every rank's request), one MPI_Allgatherv of the requests, and the
// plan-based form's agreement on its checks before any sample moves (an MPI_Allgather like every agreement).
constexpr std::uint64_t one_call_collectives = 3;
// The plan form: its agreement, one MPI_Allgather; the samples move point to point.
constexpr std::uint64_t plan_form_collectives = 1;
// seqpar::all_to_all: the agreement and one MPI_Alltoall; with an exchange prepared once, the MPI_Alltoall.
constexpr std::uint64_t seqpar_collectives = 2;
constexpr std::uint64_t prepared_collectives = 1;
// shard_scatter: the agreement on the specs; the batches move point to point.
constexpr std::uint64_t shard_collectives = 1;
// dispatch: the agreement on the root and its items; the items move point to point.
constexpr std::uint64_t dispatch_collectives = 1;

// ---- recording -----------------------------------------------------------------------------------------

// Memory a test knows the payload to lie in: the op's inputs and results.
struct range {
  const std::byte* data;
  std::size_t bytes;
};

range range_of(const host_tensor& t) { return {static_cast<const std::byte*>(t.data()), t.nbytes()}; }

bool overlaps(const void* p, std::size_t n, const range& r) {
  const auto* b = static_cast<const std::byte*>(p);
  return n != 0 && r.bytes != 0 && b < r.data + r.bytes && r.data < b + n;
}

// What `calls` calls of an op did on this rank, each count summed over the calls.
struct recorded {
  std::uint64_t calls = 1;
  std::uint64_t collectives = 0, point_to_point = 0;
  std::string functions;  // the collectives and their calls, in the order of their first call
  counter::figures figures;
  std::vector<counter::copy_record> copies;
  std::vector<std::size_t> allocations;
  bool complete = true;  // whether the logs hold every copy and allocation

  // Bytes of the copies that read or write payload memory (the op's inputs and results; staging in between
  // is reached only from or to them), leaving out the codecs' copies of metadata.
  std::uint64_t payload_copied(const std::vector<range>& payload) const {
    std::uint64_t total = 0;
    for (const auto& c : copies)
      if (std::any_of(payload.begin(), payload.end(), [&](const range& r) {
            return overlaps(c.to, c.bytes, r) || overlaps(c.from, c.bytes, r);
          }))
        total += c.bytes;
    return total;
  }
  std::string allocation_sizes() const {
    std::string s;
    for (const std::size_t n : allocations) s += (s.empty() ? "" : " ") + std::to_string(n);
    return s;
  }
};

// Runs f `calls` times between the probe's and the counter's start() and stop().
recorded record(const std::function<void()>& f, std::uint64_t calls = 1) {
  probe::start();
  counter::start();
  for (std::uint64_t i = 0; i < calls; ++i) f();
  counter::stop();
  probe::stop();
  recorded r;
  r.calls = calls;
  r.collectives = probe::total(probe::call_kind::collective).calls;
  r.point_to_point = probe::total(probe::call_kind::point_to_point).calls;
  for (const auto& c : probe::counts())
    if (c.kind == probe::call_kind::collective)
      r.functions +=
          (r.functions.empty() ? "" : " ") + std::string(c.function) + " x" + std::to_string(c.calls);
  r.figures = counter::counts();
  const auto copies = counter::copy_log();
  const auto allocations = counter::allocation_log();
  r.copies.assign(copies.begin(), copies.end());
  r.allocations.assign(allocations.begin(), allocations.end());
  r.complete = r.figures.copies <= counter::log_limit && r.figures.allocations <= counter::log_limit;
  return r;
}

// Shows this rank's figures with any failure after it in the same scope.
#define REDIST_SHOW(r)                                                                                       \
  INFO("collectives " << (r).collectives << " (" << (r).functions << "), point to point "                    \
                      << (r).point_to_point << ", copies " << (r).figures.copies << " of "                   \
                      << (r).figures.copied_bytes << " B, allocations " << (r).figures.allocations << " of " \
                      << (r).figures.allocated_bytes << " B (" << (r).allocation_sizes() << ")"              \
                      << " over " << (r).calls << " calls")

std::byte pattern(std::uint64_t a, std::uint64_t b) {
  std::uint64_t x = (a + 1) * 0x9E3779B97F4A7C15ull ^ (b + 7) * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 29;
  return static_cast<std::byte>(x & 0xFF);
}

void fill(std::span<std::byte> bytes, std::uint64_t seed) {
  for (std::size_t j = 0; j < bytes.size(); ++j) bytes[j] = pattern(seed, j);
}

bool holds_pattern(std::span<const std::byte> bytes, std::uint64_t seed, std::size_t from = 0) {
  for (std::size_t j = 0; j < bytes.size(); ++j)
    if (bytes[j] != pattern(seed, from + j)) return false;
  return true;
}

// ---- redistribute's workload: rank r holds samples 10r+1 (16 KiB of i32) and 10r+2 (80 KiB), and wants the
// next rank's second sample, then its own first: one kept, one received, in another order than held.
constexpr std::int64_t small_tokens = 4096, large_tokens = 20480;
std::int64_t tokens_of(sample_id id) { return id % 10 == 1 ? small_tokens : large_tokens; }
std::size_t bytes_of(sample_id id) { return static_cast<std::size_t>(tokens_of(id)) * 4; }

redist::sequence_batch<> held_batch(int r) {
  const std::vector<sample_id> ids{10 * static_cast<sample_id>(r) + 1, 10 * static_cast<sample_id>(r) + 2};
  redist::seqlen_table lens;
  for (const sample_id id : ids) lens.push_back(std::vector<std::int64_t>{tokens_of(id)});
  host_tensor t(dtype::i32, {small_tokens + large_tokens});
  fill(t.bytes().subspan(0, bytes_of(ids[0])), ids[0]);
  fill(t.bytes().subspan(bytes_of(ids[0])), ids[1]);
  std::vector<redist::sequence_batch<>::field> fields;
  fields.push_back({"x", dtype::i32, {}, std::move(lens), std::move(t)});
  return redist::sequence_batch<>(ids, std::move(fields));
}

std::vector<sample_id> wanted_by(int r, int size) {
  const auto next = static_cast<sample_id>((r + 1) % size);
  return {10 * next + 2, 10 * static_cast<sample_id>(r) + 1};
}

// The bytes of the wanted samples this rank holds itself: what it copies into its result.
std::size_t kept_bytes(int r, int size) {
  std::size_t n = 0;
  for (const sample_id id : wanted_by(r, size))
    if (id / 10 == static_cast<sample_id>(r)) n += bytes_of(id);
  return n;
}

bool is_result(const redist::sequence_batch<>& got, const std::vector<sample_id>& wanted) {
  if (!std::ranges::equal(got.ids(), wanted) || !got.has_key("x")) return false;
  const auto bytes = got.data("x").bytes();
  std::size_t at = 0;
  for (const sample_id id : wanted) {
    if (at + bytes_of(id) > bytes.size() || !holds_pattern(bytes.subspan(at, bytes_of(id)), id)) return false;
    at += bytes_of(id);
  }
  return at == bytes.size();
}

}  // namespace

TEST_CASE("redistribute's one-call form: its collectives, and one copy of the samples a rank keeps") {
  const auto reversed = redist::test::reversed_world();
  const redist::mpi_communicator comm(reversed.get());
  const auto batch = held_batch(comm.rank());
  const auto wanted = wanted_by(comm.rank(), comm.size());
  redist::sequence_batch<> got;
  const recorded r = record([&] { got = redist::redistribute(comm, batch, wanted); });
  REDIST_SHOW(r);
  CHECK(counter::copies_visible());
  CHECK(r.complete);
  CHECK(is_result(got, wanted));
  CHECK(r.collectives == one_call_collectives);
  // Received samples land in the result with no copy of their own; the kept one is copied in once.
  CHECK(r.payload_copied({range_of(batch.data("x")), range_of(got.data("x"))}) ==
        kept_bytes(comm.rank(), comm.size()));
}

TEST_CASE(
    "redistribute_into a kept result with a kept workspace and plan cache allocates nothing "
    "payload-sized") {
  const auto reversed = redist::test::reversed_world();
  const redist::mpi_communicator comm(reversed.get());
  const auto batch = held_batch(comm.rank());
  const auto wanted = wanted_by(comm.rank(), comm.size());
  redist::sequence_batch<> out;
  redist::workspace staging;
  redist::plan_cache plans;
  const redist::redistribute_options opts{.staging = &staging, .plans = &plans};
  redist::redistribute_into(comm, batch, wanted, out, opts);  // the first call allocates the result
  const void* first = out.data("x").data();
  constexpr std::uint64_t calls = 3;
  const recorded r = record([&] { redist::redistribute_into(comm, batch, wanted, out, opts); }, calls);
  REDIST_SHOW(r);
  CHECK(r.complete);
  CHECK(is_result(out, wanted));
  CHECK(out.data("x").data() == first);  // filled in place
  CHECK(r.collectives == calls * one_call_collectives);
  CHECK(r.payload_copied({range_of(batch.data("x")), range_of(out.data("x"))}) ==
        calls * kept_bytes(comm.rank(), comm.size()));
  // Nothing as large as the smallest sample. What remains (88 allocations of 4.3 KB per call at 2 ranks,
  // the largest 432 B) is metadata: the call's description as its text grows, the encoded request and the
  // allgathered ones with their decoded parts, the store's index of the borrowed batch, the exchange's lists
  // of pieces and requests.
  CHECK(r.figures.largest_allocation < bytes_of(1));
}

namespace {

// ---- many samples: rank r holds `n` samples 1000r + i, of 1 + i % 7 tokens and a metadata value each, and
// wants the next rank's in reverse order, then every second one of its own.
redist::sequence_batch<> many_held(int r, std::size_t n) {
  std::vector<sample_id> ids;
  redist::seqlen_table lens;
  std::vector<std::string> names;
  std::int64_t tokens = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ids.push_back(1000 * static_cast<sample_id>(r) + i);
    lens.push_back(std::vector<std::int64_t>{static_cast<std::int64_t>(1 + i % 7)});
    tokens += static_cast<std::int64_t>(1 + i % 7);
    names.push_back("a value longer than a short string's buffer, of sample " + std::to_string(ids.back()));
  }
  host_tensor t(dtype::i32, {tokens});
  fill(t.bytes(), static_cast<std::uint64_t>(r));
  std::vector<redist::sequence_batch<>::field> fields;
  fields.push_back({"x", dtype::i32, {}, std::move(lens), std::move(t)});
  return redist::sequence_batch<>(ids, std::move(fields), {{"name", std::move(names)}});
}

std::vector<sample_id> many_wanted(int r, int size, std::size_t n) {
  const auto next = static_cast<sample_id>((r + 1) % size);
  std::vector<sample_id> ids;
  for (std::size_t i = n; i-- > 0;) ids.push_back(1000 * next + i);
  if (next != static_cast<sample_id>(r))
    for (std::size_t i = 0; i < n; i += 2) ids.push_back(1000 * static_cast<sample_id>(r) + i);
  return ids;
}

// The allocations of a repeated redistribute_into of `n` samples per rank, kept result, workspace and plans.
recorded repeated_many(const redist::mpi_communicator& comm, std::size_t n) {
  const auto batch = many_held(comm.rank(), n);
  const auto wanted = many_wanted(comm.rank(), comm.size(), n);
  redist::sequence_batch<> out;
  redist::workspace staging;
  redist::plan_cache plans;
  const redist::redistribute_options opts{.staging = &staging, .plans = &plans};
  redist::redistribute_into(comm, batch, wanted, out, opts);
  redist::redistribute_into(comm, batch, wanted, out, opts);  // the workspace at its size
  const void* first = out.data("x").data();
  const recorded r = record([&] { redist::redistribute_into(comm, batch, wanted, out, opts); });
  CHECK(out.data("x").data() == first);
  CHECK(std::ranges::equal(out.ids(), wanted));
  CHECK(out.metadata().at("name").size() == wanted.size());
  return r;
}

}  // namespace

TEST_CASE("a repeated redistribute_into allocates per call what does not grow with its samples") {
  const auto reversed = redist::test::reversed_world();
  const redist::mpi_communicator comm(reversed.get());
  const recorded few = repeated_many(comm, 8);
  const recorded many = repeated_many(comm, 800);
  INFO("8 samples per rank: " << few.figures.allocations << " allocations of " << few.figures.allocated_bytes
                              << " B; 800: " << many.figures.allocations << " of "
                              << many.figures.allocated_bytes << " B (" << many.allocation_sizes() << ")");
  MESSAGE("rank " << comm.rank() << ": allocations per call, 8 samples per rank " << few.figures.allocations
                  << ", 800 samples " << many.figures.allocations);
  CHECK(few.complete);
  CHECK(many.complete);
  // 100 times the samples: the lists that grow by doubling (pieces, copies, the encoded request) make a few
  // more allocations each (49 in all at 2 ranks), and nothing is allocated per sample: not the store's index
  // of the batch, not the result or its metadata (which allocated 4 per sample before).
  CHECK(many.figures.allocations - few.figures.allocations < (800 - 8) / 10);
}

TEST_CASE("redistribute's plan form: one collective, and received samples land with no copy") {
  const auto reversed = redist::test::reversed_world();
  const redist::mpi_communicator comm(reversed.get());
  const auto batch = held_batch(comm.rank());
  const auto wanted = wanted_by(comm.rank(), comm.size());
  redist::world_metadata world = redist::gather_metadata(comm, batch);
  std::vector<redist::id_list> wants;
  for (int q = 0; q < comm.size(); ++q) wants.push_back(wanted_by(q, comm.size()));
  const std::vector<std::string> keys{"x"};
  const redist::plan p = redist::plan_all_to_all(world.tracker, wants, keys);
  redist::sample_store<> store;
  store.borrow(batch);
  const recorded r = record([&] { redist::redistribute(comm, store, p, world.cat); });
  REDIST_SHOW(r);
  std::vector<range> payload{range_of(batch.data("x"))};
  for (const sample_id id : wanted)
    if (const auto at = store.find(id, "x")) payload.push_back(range_of(at->batch->data("x")));
  CHECK(r.complete);
  CHECK(r.collectives == plan_form_collectives);
  CHECK(r.payload_copied(payload) == 0);  // the kept sample stays where it is
  CHECK(is_result(store.collect(wanted, keys), wanted));
}

TEST_CASE(
    "seqpar::all_to_all: the agreement and one exchange, each byte copied once where a side is not "
    "contiguous") {
  const auto reversed = redist::test::reversed_world();
  const redist::mpi_communicator comm(reversed.get());
  const int P = comm.size();
  host_tensor x(dtype::i32, {2 * P, 2 * P, 256});  // every dim divisible by the ranks
  fill(x.bytes(), static_cast<std::uint64_t>(comm.rank()));
  struct dims {
    int scatter, gather;
    bool pack, unpack;  // whether x's chunks are packed, and the blocks received unpacked
  };
  // Scatter dim 0 sends x in place, gather dim 0 receives in place (every dim before it of extent 1).
  for (const dims d :
       {dims{0, 1, false, true}, dims{1, 0, true, false}, dims{0, 0, false, false}, dims{1, 2, true, true}}) {
    CAPTURE(d.scatter);
    CAPTURE(d.gather);
    host_tensor out;
    const recorded r = record([&] { out = redist::seqpar::all_to_all(comm, x, d.scatter, d.gather); });
    REDIST_SHOW(r);
    CHECK(r.collectives == seqpar_collectives);
    // At one rank the one chunk is all of x and the one block all of the output: both contiguous.
    CHECK(r.payload_copied({range_of(x), range_of(out)}) ==
          (d.pack && P > 1 ? x.nbytes() : 0) + (d.unpack && P > 1 ? out.nbytes() : 0));
    CHECK(out.nbytes() == x.nbytes());

    // Into a kept output with a kept workspace: a repeated call allocates nothing payload-sized.
    redist::seqpar::workspace ws;
    host_tensor kept(out.dtype(), std::vector<std::int64_t>(out.shape().begin(), out.shape().end()));
    redist::seqpar::all_to_all_into(comm, x, d.scatter, d.gather, kept, &ws);
    const recorded again =
        record([&] { redist::seqpar::all_to_all_into(comm, x, d.scatter, d.gather, kept, &ws); });
    REDIST_SHOW(again);
    CHECK(again.collectives == seqpar_collectives);
    CHECK(again.figures.largest_allocation < x.nbytes() / static_cast<std::size_t>(P));
    CHECK(std::ranges::equal(kept.bytes(), out.bytes()));

    // Prepared once (seqpar::prepare_all_to_all): a repeated call is the exchange alone, with the same
    // copies, and where neither side is packed it allocates nothing at all.
    const auto prepared = redist::seqpar::prepare_all_to_all(comm, x, d.scatter, d.gather);
    host_tensor into(out.dtype(), std::vector<std::int64_t>(out.shape().begin(), out.shape().end()));
    redist::seqpar::all_to_all_into(comm, prepared, x, into, &ws);
    const recorded prep = record([&] { redist::seqpar::all_to_all_into(comm, prepared, x, into, &ws); });
    REDIST_SHOW(prep);
    CHECK(prep.collectives == prepared_collectives);
    CHECK(prep.payload_copied({range_of(x), range_of(into)}) ==
          (d.pack && P > 1 ? x.nbytes() : 0) + (d.unpack && P > 1 ? out.nbytes() : 0));
    CHECK(prep.figures.largest_allocation < x.nbytes() / static_cast<std::size_t>(P));
    if ((!d.pack && !d.unpack) || P == 1) CHECK(prep.figures.allocations == 0);
    CHECK(std::ranges::equal(into.bytes(), out.bytes()));
  }
}

TEST_CASE("shard_scatter and dispatch: one agreement each, the data point to point") {
  const auto reversed = redist::test::reversed_world();
  const redist::mpi_communicator comm(reversed.get());
  const int P = comm.size();
  {
    std::vector<redist::shard_spec> specs;
    specs.push_back({"w", dtype::f32, {4 * P, 1024}, 0, 0});
    specs.push_back({"b", dtype::i16, {300}, std::nullopt, P - 1});
    specs.push_back({"v", dtype::u8, {5000 * P}, 0, 1 % P});
    std::vector<redist::named_tensor<host_tensor>> got;
    const recorded r = record([&] {
      got = redist::shard_scatter(comm, specs, [&](std::size_t i) {
        host_tensor t(specs[i].dtype, specs[i].shape);
        fill(t.bytes(), 100 + i);
        return t;
      });
    });
    REDIST_SHOW(r);
    CHECK(r.collectives == shard_collectives);
    CHECK(got.size() == specs.size());
  }
  {
    std::vector<redist::nested<host_tensor>> items;
    auto item_of = [](int q) {
      redist::nested<host_tensor>::fields f;
      host_tensor small(dtype::i64, {100 + q}), large(dtype::u8, {40000 + q});
      fill(small.bytes(), 1000 + static_cast<std::uint64_t>(q));
      fill(large.bytes(), 2000 + static_cast<std::uint64_t>(q));
      f.push_back({"tokens", std::move(small)});
      f.push_back({"pixels", std::move(large)});
      return redist::nested<host_tensor>(std::move(f));
    };
    if (comm.rank() == 0)
      for (int q = 0; q < P; ++q) items.push_back(item_of(q));
    redist::nested<host_tensor> got;
    const recorded r = record([&] { got = redist::dispatch(comm, items, 0); });
    REDIST_SHOW(r);
    CHECK(r.collectives == dispatch_collectives);
    CHECK(got.is_fields());
    // Tensors below pack_below travel packed in the receiver's first message (the root copies them in, the
    // receiver out), larger ones straight from the item into the result; the root copies its own item.
    std::vector<range> payload;
    for (const auto& item : items)
      item.for_each_tensor([&](const host_tensor& t) { payload.push_back(range_of(t)); });
    got.for_each_tensor([&](const host_tensor& t) { payload.push_back(range_of(t)); });
    auto small_bytes = [](int q) { return static_cast<std::size_t>(8 * (100 + q)); };
    std::size_t expected = small_bytes(comm.rank());
    if (comm.rank() == 0) {
      expected += static_cast<std::size_t>(40000);
      for (int q = 1; q < P; ++q) expected += small_bytes(q);
    }
    CHECK(r.complete);
    CHECK(r.payload_copied(payload) == expected);
  }
}
