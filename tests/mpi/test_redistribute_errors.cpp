// MPI tests of redist::redistribute()'s agreement before transfer: one rank's bad input (conflicting seqlens,
// dtypes or trailing shapes, ids nobody holds or wanted twice, an invalid batch, values float32 would change,
// a plan that differs or names data its sender lacks) becomes the same redist::error on every rank, no store
// changes, and a correct call on the same communicator works afterwards: no message was left in flight.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/redistribute.hpp"

namespace {

using redist::dtype;
using redist::sample_id;
using batch = redist::sequence_batch<>;
using redist::test::all_ranks;

// ---- the ring layout and its contents, computed independently on every rank ----
//
// Rank r holds ids 100r+1 .. 100r+3 with keys "tokens" (i64), "logprobs" (f32) and "hidden" (bf16 [3, 2]),
// and wants the ids of rank r+1 (mod n), last first. Lengths and values are functions of (id, key, element);
// every value survives float32 staging.

constexpr const char* key_names[] = {"tokens", "logprobs", "hidden"};
constexpr std::size_t tokens = 0, logprobs = 1, hidden = 2;

std::vector<sample_id> ids_of(int r) {
  const auto base = 100 * static_cast<sample_id>(r);
  return {base + 1, base + 2, base + 3};
}
std::vector<sample_id> wanted_by(int r, int n) {
  auto ids = ids_of((r + 1) % n);
  std::reverse(ids.begin(), ids.end());
  return ids;
}
int wanter_of(int r, int n) { return (r + n - 1) % n; }  // the rank that wants rank r's ids

std::vector<std::int64_t> seqlens_of(sample_id id, std::size_t key) {
  return {static_cast<std::int64_t>(1 + (id + key) % 3), static_cast<std::int64_t>(id % 2), 2};
}
std::int64_t token_count(sample_id id, std::size_t key) {
  std::int64_t n = 0;
  for (auto l : seqlens_of(id, key)) n += l;
  return n;
}

// An element replaced by a value of the test's choosing: element 0 of (id, "tokens").
struct token_patch {
  sample_id id;
  std::int64_t value;
};

std::vector<std::byte> expected_bytes(sample_id id, std::size_t key, std::optional<token_patch> patch = {}) {
  const auto rows = static_cast<std::size_t>(token_count(id, key));
  std::vector<std::byte> out;
  auto put = [&](const auto& v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof v);
  };
  for (std::size_t e = 0; e < rows * (key == hidden ? 6 : 1); ++e) {
    if (key == tokens) {
      std::int64_t v = static_cast<std::int64_t>((id * 1000 + e) % (1u << 23));
      if (patch && patch->id == id && e == 0) v = patch->value;
      put(v);
    } else if (key == logprobs) {
      put(static_cast<float>(e) * 0.5f - static_cast<float>(id));
    } else {
      put(static_cast<std::uint16_t>((id * 7 + e) & 0x3fffu));  // bf16 bits of a finite value
    }
  }
  return out;
}

// What a bad rank may get wrong in its batch.
struct flaws {
  std::optional<sample_id> copy_with_other_tokens_seqlens;  // also hold this id, with other "tokens" seqlens
  bool logprobs_f64 = false;
  bool hidden_transposed = false;  // trailing shape [2, 3] instead of [3, 2]
  std::optional<token_patch> patch;
};

flaws other_tokens_seqlens(sample_id id) {
  flaws f;
  f.copy_with_other_tokens_seqlens = id;
  return f;
}
flaws f64_logprobs() {
  flaws f;
  f.logprobs_f64 = true;
  return f;
}
flaws transposed_hidden() {
  flaws f;
  f.hidden_transposed = true;
  return f;
}
flaws patched(std::optional<token_patch> patch) {
  flaws f;
  f.patch = patch;
  return f;
}

batch make_batch(int r, const flaws& bad = {}) {
  auto ids = ids_of(r);
  if (bad.copy_with_other_tokens_seqlens) ids.push_back(*bad.copy_with_other_tokens_seqlens);
  std::vector<batch::field> fields;
  for (std::size_t k = 0; k < 3; ++k) {
    redist::seqlen_table lens;
    std::vector<std::byte> bytes;
    std::int64_t rows = 0;
    for (sample_id id : ids) {
      if (k == tokens && bad.copy_with_other_tokens_seqlens == id) {
        lens.push_back(std::vector<std::int64_t>{token_count(id, k)});  // the same tokens, one sequence
      } else {
        lens.push_back(seqlens_of(id, k));
      }
      rows += token_count(id, k);
      const auto b = expected_bytes(id, k, bad.patch);
      bytes.insert(bytes.end(), b.begin(), b.end());
    }
    dtype type = k == tokens ? dtype::i64 : k == logprobs ? dtype::f32 : dtype::bf16;
    std::vector<std::int64_t> trailing;
    if (k == hidden)
      trailing = bad.hidden_transposed ? std::vector<std::int64_t>{2, 3} : std::vector<std::int64_t>{3, 2};
    if (k == logprobs && bad.logprobs_f64) {  // the same values as doubles
      type = dtype::f64;
      std::vector<std::byte> wide;
      for (std::size_t at = 0; at < bytes.size(); at += 4) {
        float f;
        std::memcpy(&f, bytes.data() + at, 4);
        const double d = f;
        const auto* p = reinterpret_cast<const std::byte*>(&d);
        wide.insert(wide.end(), p, p + 8);
      }
      bytes = std::move(wide);
    }
    std::vector<std::int64_t> shape{rows};
    shape.insert(shape.end(), trailing.begin(), trailing.end());
    redist::host_tensor t(type, shape);
    REQUIRE(t.nbytes() == bytes.size());  // a test bug, not a library one; no collective is pending
    std::memcpy(t.data(), bytes.data(), bytes.size());
    fields.push_back({key_names[k], type, std::move(trailing), std::move(lens), std::move(t)});
  }
  return batch(std::move(ids), std::move(fields));
}

// The first way in which `got` differs from the ids `ids` with every key in key_names order; empty if none.
std::string result_problem(const batch& got, const std::vector<sample_id>& ids,
                           std::optional<token_patch> patch = {}) {
  if (!std::equal(got.ids().begin(), got.ids().end(), ids.begin(), ids.end())) return "other ids";
  const auto keys = got.keys();
  if (keys.size() != 3) return "other keys";
  for (std::size_t k = 0; k < 3; ++k) {
    if (keys[k] != key_names[k]) return "other keys";
    for (std::size_t i = 0; i < got.size(); ++i) {
      const auto lens = got.seqlens(key_names[k], i);
      const auto want_lens = seqlens_of(ids[i], k);
      if (!std::equal(lens.begin(), lens.end(), want_lens.begin(), want_lens.end()))
        return "id " + std::to_string(ids[i]) + ", key '" + key_names[k] + "': other seqlens";
      const auto range = got.sample_bytes(key_names[k], i);
      const auto want = expected_bytes(ids[i], k, patch);
      const auto* at = static_cast<const std::byte*>(got.data(key_names[k]).data()) + range.offset;
      if (range.size != want.size() || std::memcmp(at, want.data(), want.size()) != 0)
        return "id " + std::to_string(ids[i]) + ", key '" + key_names[k] + "': other bytes";
    }
  }
  return {};
}

const std::vector<std::string> all_keys = {"tokens", "logprobs", "hidden"};

// ---- outcomes and their agreement ----

using redist::test::outcome;
using redist::test::outcome_of;

std::uint64_t fnv(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h | 1;  // never 0, which stands for "no redist::error"
}

// Collective over comm: every rank caught a redist::error, the same message everywhere, naming every part.
// Checked on every rank after the agreement, so no rank leaves while another waits.
void check_agreed_error(const outcome& o, MPI_Comm comm, const std::vector<std::string>& parts) {
  const std::uint64_t h = o.redist_error ? fnv(o.message) : 0;
  std::uint64_t lo = 0, hi = 0;
  MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, comm);
  MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, comm);
  bool named = o.redist_error;
  for (const auto& p : parts) named = named && o.message.find(p) != std::string::npos;
  const bool all_named = all_ranks(named, comm);
  INFO("this rank's message: " << o.message);
  CHECK_MESSAGE(lo == hi, "the ranks caught different messages");
  CHECK_MESSAGE(lo != 0, "every rank must catch a redist::error");
  CHECK(all_named);
  for (const auto& p : parts) CHECK(doctest::String(o.message.c_str()) == doctest::Contains(p.c_str()));
}

// A correct one-call exchange of the ring on comm, checked byte for byte; empty when right.
std::string ring_problem(const redist::mpi_communicator& comm) {
  try {
    const batch local = make_batch(comm.rank());
    const auto wanted = wanted_by(comm.rank(), comm.size());
    return result_problem(redist::redistribute(comm, local, wanted, {.keys = all_keys}), wanted);
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
}

// After an error: a correct call on the same communicator still works, on every rank.
void check_still_works(const redist::mpi_communicator& comm) {
  const std::string problem = ring_problem(comm);
  const bool ok = all_ranks(problem.empty(), comm.native());
  CHECK_MESSAGE(ok,
                "a correct redistribute after the error, this rank: " << (problem.empty() ? "ok" : problem));
}

// One-call form: every rank passes its batch and wants; returns what this rank caught.
template <class Staging = redist::byte_staging>
outcome one_call(const redist::mpi_communicator& comm, const batch& local,
                 const std::vector<sample_id>& wanted, redist::redistribute_options opts = {}) {
  opts.keys = all_keys;
  return outcome_of([&] { (void)redist::redistribute<Staging>(comm, local, wanted, opts); });
}

// The bad ranks a case runs with: 1 and the last (one of them when they coincide).
std::vector<int> bad_ranks(int n) {
  std::vector<int> ranks{1};
  if (n - 1 != 1) ranks.push_back(n - 1);
  return ranks;
}

}  // namespace

TEST_CASE("agreement: seqlens that differ between ranks for one (id, key)") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n == 1) return;  // needs a second rank
  for (int bad : bad_ranks(n)) {
    // The bad rank also holds a copy of rank 0's id 1: the same tokens, but as one sequence.
    const batch local =
        comm.rank() == bad ? make_batch(bad, other_tokens_seqlens(1)) : make_batch(comm.rank());
    const outcome o = one_call(comm, local, wanted_by(comm.rank(), n));
    INFO("bad rank " << bad);
    check_agreed_error(o, comm.native(), {"id 1, key 'tokens'", "seqlens", "rank " + std::to_string(bad)});
    check_still_works(comm);
  }
}

TEST_CASE("agreement: a key's dtype differs on one rank") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n == 1) return;
  for (int bad : bad_ranks(n)) {
    const batch local = comm.rank() == bad ? make_batch(bad, f64_logprobs()) : make_batch(comm.rank());
    const outcome o = one_call(comm, local, wanted_by(comm.rank(), n));
    INFO("bad rank " << bad);
    check_agreed_error(o, comm.native(), {"'logprobs'", "f64", "f32", "rank " + std::to_string(bad)});
    check_still_works(comm);
  }
}

TEST_CASE("agreement: a key's trailing shape differs on one rank") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n == 1) return;
  for (int bad : bad_ranks(n)) {
    // [2, 3] has the bytes of [3, 2]: only the shapes tell them apart.
    const batch local = comm.rank() == bad ? make_batch(bad, transposed_hidden()) : make_batch(comm.rank());
    const outcome o = one_call(comm, local, wanted_by(comm.rank(), n));
    INFO("bad rank " << bad);
    check_agreed_error(o, comm.native(), {"'hidden'", "[2, 3]", "[3, 2]"});
    check_still_works(comm);
  }
}

TEST_CASE("agreement: one rank wants an id nobody holds") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  const int bad = n - 1;
  auto wanted = wanted_by(comm.rank(), n);
  if (comm.rank() == bad) wanted.insert(wanted.begin() + 1, 424242);
  const outcome o = one_call(comm, make_batch(comm.rank()), wanted);
  check_agreed_error(o, comm.native(), {"id 424242", "no rank holds"});
  check_still_works(comm);
}

TEST_CASE("agreement: one rank wants an id twice") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  const int bad = n - 1;
  auto wanted = wanted_by(comm.rank(), n);
  if (comm.rank() == bad) wanted.push_back(wanted.front());
  const outcome o = one_call(comm, make_batch(comm.rank()), wanted);
  check_agreed_error(o, comm.native(), {"id " + std::to_string(wanted_by(bad, n).front()), "twice"});
  check_still_works(comm);
}

TEST_CASE("agreement: one rank's batch is invalid") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  for (int bad : n == 1 ? std::vector<int>{0} : bad_ranks(n)) {
    batch local = make_batch(comm.rank());
    // A tensor one row too long for its seqlens, reached through data() as a caller might.
    if (comm.rank() == bad)
      local.data("logprobs") = redist::host_tensor(dtype::f32, {local.total_tokens("logprobs") + 1});
    const outcome o = one_call(comm, local, wanted_by(comm.rank(), n));
    INFO("bad rank " << bad);
    check_agreed_error(o, comm.native(), {"'logprobs'", "rows"});
    check_still_works(comm);
  }
}

TEST_CASE("agreement: when several ranks fail, every rank reports the lowest one's problem") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n < 3) return;  // needs two bad ranks besides rank 0
  batch local = make_batch(comm.rank());
  if (comm.rank() == 1) local.data("logprobs") = redist::host_tensor(dtype::f32, {1});
  if (comm.rank() == n - 1) local.data("hidden") = redist::host_tensor(dtype::bf16, {1, 3, 2});
  const outcome o = one_call(comm, local, wanted_by(comm.rank(), n));
  check_agreed_error(o, comm.native(), {"'logprobs'"});
  CHECK(o.message.find("'hidden'") == std::string::npos);
  check_still_works(comm);
}

TEST_CASE("agreement: float32 staging refuses a value it would change, unless allow_lossy") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n == 1) return;  // nothing crosses the wire
  constexpr std::int64_t wide = (std::int64_t{1} << 40) + 1;
  for (int bad : bad_ranks(n)) {
    const sample_id lossy_id = ids_of(bad).front();
    const token_patch patch{lossy_id, wide};
    const batch local = comm.rank() == bad ? make_batch(bad, patched(patch)) : make_batch(comm.rank());
    const auto wanted = wanted_by(comm.rank(), n);
    INFO("bad rank " << bad << ", id " << lossy_id);

    const outcome refused = one_call<redist::float32_staging>(comm, local, wanted);
    check_agreed_error(refused, comm.native(),
                       {"id " + std::to_string(lossy_id) + ", key 'tokens'", "float32", "allow_lossy"});
    check_still_works(comm);

    // Allowed: the value arrives as float32 made it (2^40), everything else exactly.
    const bool receiver = comm.rank() == wanter_of(bad, n);
    std::string lossy_problem;
    const outcome allowed = outcome_of([&] {
      redist::redistribute_options opts{.allow_lossy = true};
      opts.keys = all_keys;
      const batch got = redist::redistribute<redist::float32_staging>(comm, local, wanted, opts);
      lossy_problem = result_problem(got, wanted, token_patch{lossy_id, std::int64_t{1} << 40});
    });
    // Byte staging moves the exact value, no questions asked.
    std::string exact_problem;
    const outcome exact = outcome_of([&] {
      const batch got = redist::redistribute(comm, local, wanted, {.keys = all_keys});
      exact_problem = result_problem(got, wanted, patch);
    });
    const bool ok = all_ranks(!allowed.redist_error && lossy_problem.empty() && !exact.redist_error &&
                              exact_problem.empty());
    INFO("this rank (" << (receiver ? "receives the value" : "does not receive it") << "): allow_lossy "
                       << allowed.message << " " << lossy_problem << "; byte staging " << exact.message << " "
                       << exact_problem);
    CHECK(ok);
  }
}

namespace {

// ---- the plan-based form ----

// What a store holds: each pair with its seqlens and bytes.
struct snapshot {
  std::size_t pair_count = 0;
  std::vector<std::pair<sample_id, std::string>> pairs;
  std::vector<std::vector<std::int64_t>> seqlens;
  std::vector<std::vector<std::byte>> bytes;
  friend bool operator==(const snapshot&, const snapshot&) = default;
};

snapshot snap(const redist::sample_store<>& store) {
  snapshot s;
  s.pair_count = store.pairs();
  s.pairs = store.held();
  for (const auto& [id, key] : s.pairs) {
    const auto loc = store.find(id, key);
    const auto lens = loc->batch->seqlens(key, loc->position);
    s.seqlens.emplace_back(lens.begin(), lens.end());
    const auto range = loc->batch->sample_bytes(key, loc->position);
    const auto* at = static_cast<const std::byte*>(loc->batch->data(key).data()) + range.offset;
    s.bytes.emplace_back(at, at + range.size);
  }
  return s;
}

// Every rank's metadata, known to every rank without communication.
struct world_view {
  std::vector<batch> metas;
  redist::catalog cat;
  redist::storage_tracker tracker;
  std::vector<redist::id_list> wants;

  explicit world_view(int n) : metas(build(n)), tracker(redist::storage_tracker::from_batches(metas)) {
    for (int r = 0; r < n; ++r) {
      cat.add(metas[static_cast<std::size_t>(r)], r);
      wants.push_back(wanted_by(r, n));
    }
  }
  static std::vector<batch> build(int n) {
    std::vector<batch> out;
    for (int r = 0; r < n; ++r) out.push_back(make_batch(r));
    return out;
  }
  redist::plan ring_plan() const { return redist::plan_all_to_all(tracker, wants, all_keys); }
};

// Runs `p` on a store of this rank's batch: the store must be unchanged after the agreed error, then the
// correct ring plan must run on the same communicator and store and deliver every wanted byte.
// With a patch, rank `patched_rank` holds the patched value (and every rank expects it there afterwards).
template <class Staging = redist::byte_staging>
void check_plan_refused(const redist::mpi_communicator& comm, const world_view& view, const redist::plan& p,
                        const std::vector<std::string>& parts, std::optional<token_patch> patch = {},
                        int patched_rank = -1) {
  redist::sample_store<> store;
  store.add(comm.rank() == patched_rank ? make_batch(patched_rank, patched(patch)) : make_batch(comm.rank()));
  const snapshot before = snap(store);
  const outcome o = outcome_of([&] { redist::redistribute<Staging>(comm, store, p, view.cat); });
  check_agreed_error(o, comm.native(), parts);
  const bool unchanged = all_ranks(snap(store) == before, comm.native());
  CHECK_MESSAGE(unchanged, "a store changed");

  std::string problem;
  const outcome after = outcome_of([&] {
    redist::redistribute(comm, store, view.ring_plan(), view.cat);
    const auto wanted = wanted_by(comm.rank(), comm.size());
    problem = result_problem(store.collect(wanted, all_keys), wanted, patch);
    auto own = ids_of(comm.rank());
    if (problem.empty()) problem = result_problem(store.collect(own, all_keys), own, patch);
  });
  const bool ok =
      all_ranks(!after.redist_error && after.message == "no error" && problem.empty(), comm.native());
  CHECK_MESSAGE(ok, "the correct plan afterwards, this rank: " << after.message << " " << problem);
}

}  // namespace

TEST_CASE("agreement: one rank is given a different plan") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n == 1) return;  // at one rank every plan is empty
  const world_view view(n);
  for (int bad : bad_ranks(n)) {
    INFO("bad rank " << bad);
    // Another pattern: broadcast steps where the others run one all-to-all.
    const redist::plan other = redist::plan_broadcast(view.tracker, view.wants, all_keys);
    check_plan_refused(comm, view, comm.rank() == bad ? other : view.ring_plan(),
                       {"redist::redistribute: the ranks' calls differ in plan",
                        "rank " + std::to_string(bad) + " passes plan"});
    // The same pattern, one rank's wanted order reversed: only the ids' order differs.
    auto wants = view.wants;
    std::reverse(wants[0].begin(), wants[0].end());
    const redist::plan reordered = redist::plan_all_to_all(view.tracker, wants, all_keys);
    check_plan_refused(comm, view, comm.rank() == bad ? reordered : view.ring_plan(),
                       {"the ranks' calls differ in plan", "rank " + std::to_string(bad) + " passes plan"});
  }
}

TEST_CASE("agreement: a plan names data its sender does not hold") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n == 1) return;  // a step needs a second rank
  const world_view view(n);
  for (int bad : bad_ranks(n)) {
    INFO("bad rank " << bad);
    // The bad rank is told to send rank 0's id 1, which only rank 0 holds.
    redist::plan p{
        .ranks = n,
        .stages = {{redist::broadcast_step{.root = bad, .dsts = {0}, .ids = {1}, .keys = {"tokens"}}}}};
    check_plan_refused(comm, view, p,
                       {"rank " + std::to_string(bad) + " must send id 1, key 'tokens'", "does not hold"});
  }
  // An id no rank holds at all.
  redist::plan unknown{
      .ranks = n,
      .stages = {{redist::broadcast_step{.root = 0, .dsts = {n - 1}, .ids = {777777}, .keys = {"hidden"}}}}};
  check_plan_refused(comm, view, unknown, {"id 777777, key 'hidden'", "no rank holds it"});
}

TEST_CASE("agreement: a plan for another number of ranks") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  const world_view view(n);
  redist::plan p = view.ring_plan();
  p.ranks = n + 1;
  check_plan_refused(comm, view, p, {"the plan is for " + std::to_string(n + 1) + " ranks"});
}

TEST_CASE("agreement: the plan-based form refuses a value float32 staging would change") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n == 1) return;  // nothing crosses the wire
  const world_view view(n);
  for (int bad : bad_ranks(n)) {
    const sample_id lossy_id = ids_of(bad).front();
    INFO("bad rank " << bad);
    check_plan_refused<redist::float32_staging>(
        comm, view, view.ring_plan(), {"id " + std::to_string(lossy_id) + ", key 'tokens'", "float32"},
        token_patch{lossy_id, (std::int64_t{1} << 40) + 1}, bad);
  }
}

// ---- gather_metadata: the catalog and tracker of the plan-based form, and its agreement ----

// Every rank's metadata from gather_metadata against the same built locally; then the ring plan made from
// what it gathered, run with its catalog: every rank ends with its wanted samples, byte for byte.
void check_gathered(const redist::mpi_communicator& comm) {
  const int n = comm.size();
  const auto w = redist::gather_metadata(comm, make_batch(comm.rank()));
  const world_view view(n);
  REQUIRE(w.batches.size() == static_cast<std::size_t>(n));
  for (std::size_t r = 0; r < w.batches.size(); ++r) {
    const auto& got = w.batches[r];
    const auto& want = view.metas[r];
    CHECK_FALSE(got.has_data());
    CHECK(std::equal(got.ids().begin(), got.ids().end(), want.ids().begin(), want.ids().end()));
    REQUIRE(got.fields().size() == want.fields().size());
    for (std::size_t f = 0; f < got.fields().size(); ++f) {
      CHECK(got.fields()[f].name == want.fields()[f].name);
      CHECK(got.fields()[f].dtype == want.fields()[f].dtype);
      CHECK(got.fields()[f].trailing_shape == want.fields()[f].trailing_shape);
      CHECK(got.fields()[f].seqlens == want.fields()[f].seqlens);
    }
  }
  CHECK(std::equal(w.tracker.ids().begin(), w.tracker.ids().end(), view.tracker.ids().begin(),
                   view.tracker.ids().end()));
  CHECK(std::equal(w.tracker.keys().begin(), w.tracker.keys().end(), view.tracker.keys().begin(),
                   view.tracker.keys().end()));
  REQUIRE(w.cat.keys().size() == view.cat.keys().size());
  for (std::size_t k = 0; k < w.cat.keys().size(); ++k)
    CHECK(w.cat.keys()[k].name == view.cat.keys()[k].name);

  const auto wanted = wanted_by(comm.rank(), n);
  redist::sample_store<> store(make_batch(comm.rank()));
  redist::redistribute(comm, store, redist::plan_all_to_all(w.tracker, view.wants, all_keys), w.cat);
  CHECK(result_problem(store.collect(wanted, all_keys), wanted) == "");
}

TEST_CASE("gather_metadata: every rank's metadata, the catalog and the tracker, on the world and backwards") {
  check_gathered(redist::mpi_communicator(MPI_COMM_WORLD));
  const auto reversed = redist::test::reversed_world();
  check_gathered(redist::mpi_communicator(reversed.get()));
}

TEST_CASE("gather_metadata: one rank's invalid batch or conflicting seqlens, the same error everywhere") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  for (int bad : n == 1 ? std::vector<int>{0} : bad_ranks(n)) {
    INFO("bad rank " << bad);
    batch local = make_batch(comm.rank());
    if (comm.rank() == bad)
      local.data("logprobs") = redist::host_tensor(dtype::f32, {local.total_tokens("logprobs") + 1});
    check_agreed_error(outcome_of([&] { (void)redist::gather_metadata(comm, local); }), comm.native(),
                       n == 1
                           ? std::vector<std::string>{"'logprobs'", "rows"}
                           : std::vector<std::string>{"'logprobs'", "rows", "rank " + std::to_string(bad)});
    if (n == 1) continue;
    const batch conflicting =
        comm.rank() == bad ? make_batch(bad, other_tokens_seqlens(1)) : make_batch(comm.rank());
    check_agreed_error(outcome_of([&] { (void)redist::gather_metadata(comm, conflicting); }), comm.native(),
                       {"id 1, key 'tokens'", "seqlens", "rank " + std::to_string(bad)});
  }
  check_gathered(comm);  // the next call works
}
