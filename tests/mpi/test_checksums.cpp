// MPI tests of redistribute()'s end-to-end checksums: with them on, results are byte-exact in both forms,
// every pattern and both stagings, on the world and a communicator numbered backwards; copies of a payload
// that differ between their holders, and bytes changed on the way (a test hook on the received blocks), are
// the same redist::error on every rank naming the id, the key and the ranks; the ranks must agree on the
// option; and the communicator works afterwards.
#include <doctest/doctest.h>
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/redistribute.hpp"
#include "redist/staging/exchange.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;
using batch = redist::sequence_batch<>;
using redist::test::all_ranks;
using redist::test::outcome_of;

// Rank r of n produces ids 100r + 1 .. 100r + 3, and holds a copy of id 100(r + 1 mod n) + 1 too (a
// replica, equal bytes unless `odd_copy`); key "v" is i32 [2] with 1 + id % 4 tokens, element e of id being
// 7 id + e. It wants, last first, the ids rank r + 1 produces, and (with other ranks) its own first id.
std::int64_t tokens_of(sample_id id) { return 1 + static_cast<std::int64_t>(id % 4); }
std::int32_t value(sample_id id, std::int64_t e) {
  return static_cast<std::int32_t>(7 * id) + static_cast<std::int32_t>(e);
}

std::vector<sample_id> held_by(int r, int n) {
  const auto base = 100 * static_cast<sample_id>(r);
  std::vector<sample_id> ids{base + 1, base + 2, base + 3};
  if (n > 1) ids.push_back(100 * static_cast<sample_id>((r + 1) % n) + 1);
  return ids;
}

std::vector<sample_id> wanted_by(int r, int n) {
  const auto next = 100 * static_cast<sample_id>((r + 1) % n);
  if (n == 1) return {next + 3, next + 2, next + 1};
  return {next + 3, next + 2, next + 1, 100 * static_cast<sample_id>(r) + 1};
}

batch make_batch(const std::vector<sample_id>& ids, bool odd_copy = false) {
  redist::seqlen_table lens;
  std::int64_t rows = 0;
  for (const sample_id id : ids) {
    const std::int64_t t = tokens_of(id);
    lens.push_back(std::span(&t, 1));
    rows += t;
  }
  host_tensor data(dtype::i32, {rows, 2});
  auto v = data.values<std::int32_t>();
  std::size_t at = 0;
  for (std::size_t i = 0; i < ids.size(); ++i)
    for (std::int64_t e = 0; e < 2 * tokens_of(ids[i]); ++e)
      v[at++] = value(ids[i], e) + (odd_copy && i == 3 && e == 1 ? 1 : 0);
  return batch(ids, {{"v", dtype::i32, {2}, std::move(lens), std::move(data)}});
}

// Empty when `got` holds `wanted` with every element as make_batch made it.
std::string problem_in(const batch& got, const std::vector<sample_id>& wanted) {
  if (!std::equal(got.ids().begin(), got.ids().end(), wanted.begin(), wanted.end())) return "ids differ";
  const auto v = got.data("v").values<std::int32_t>();
  std::size_t at = 0;
  for (const sample_id id : wanted)
    for (std::int64_t e = 0; e < 2 * tokens_of(id); ++e)
      if (at >= v.size() || v[at++] != value(id, e)) return "id " + std::to_string(id) + " differs";
  return at == v.size() ? "" : "extra rows";
}

template <class F>
void on_world_and_backwards(F f) {
  f(redist::mpi_communicator(MPI_COMM_WORLD));
  const redist::test::owned_comm reversed = redist::test::reversed_world();
  f(redist::mpi_communicator(reversed.get()));
}

// The one-call form with checksums on, checked on every rank.
template <class Staging = redist::byte_staging>
void check_exact(const redist::mpi_communicator& comm, redist::plan_pattern pattern) {
  const int r = comm.rank(), n = comm.size();
  const auto wanted = wanted_by(r, n);
  std::string problem;
  const auto o = outcome_of([&] {
    const batch got = redist::redistribute<Staging>(comm, make_batch(held_by(r, n)), wanted,
                                                    {.checksums = true, .pattern = pattern});
    problem = problem_in(got, wanted);
  });
  INFO(o.message << " " << problem);
  CHECK(all_ranks(!o.redist_error && o.message == "no error" && problem.empty(), comm.native()));
}

// Flips one bit of the first block the hooked rank receives, once.
bool flipped = false;
void flip_once(std::span<std::byte> block) {
  if (flipped) return;
  flipped = true;
  block[block.size() / 2] ^= std::byte{0x04};
}

}  // namespace

TEST_CASE("checksums: results are byte-exact with checksums on, in every pattern and staging") {
  on_world_and_backwards([](const redist::mpi_communicator& comm) {
    CAPTURE(comm.size());
    for (const auto pattern : {redist::plan_pattern::one_hop, redist::plan_pattern::gather_scatter,
                               redist::plan_pattern::broadcast}) {
      CAPTURE(static_cast<int>(pattern));
      check_exact(comm, pattern);
      check_exact<redist::float32_staging>(comm, pattern);
    }
  });
}

TEST_CASE("checksums: the plan-based form checks what arrives in the store") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int r = comm.rank(), n = comm.size();
  std::vector<batch> everyone;
  std::vector<redist::id_list> wants;
  for (int q = 0; q < n; ++q) {
    everyone.push_back(make_batch(held_by(q, n)));
    wants.push_back(wanted_by(q, n));
  }
  redist::catalog cat;
  for (int q = 0; q < n; ++q) cat.add(everyone[static_cast<std::size_t>(q)], q);
  const auto tracker = redist::storage_tracker::from_batches(everyone);
  const std::vector<std::string> keys{"v"};
  const auto p = redist::plan_all_to_all(tracker, wants, keys);
  for (const bool corrupt : {false, true}) {
    CAPTURE(corrupt);
    redist::sample_store<> store(make_batch(held_by(r, n)));
    flipped = false;
    if (corrupt && r == n - 1) redist::testing::arrival_hook = &flip_once;
    const auto o = outcome_of([&] { redist::redistribute(comm, store, p, cat, {.checksums = true}); });
    redist::testing::arrival_hook = nullptr;
    if (!corrupt || n == 1) {
      std::string problem = o.redist_error ? o.message : "";
      if (problem.empty())
        problem = problem_in(store.collect(wants[static_cast<std::size_t>(r)], keys),
                             wants[static_cast<std::size_t>(r)]);
      INFO(problem);
      CHECK(all_ranks(problem.empty(), comm.native()));
    } else {
      redist::test::check_agreed_error(o, comm,
                                       {"redist::redistribute: checksums: id ",
                                        "key 'v' arrived on rank " + std::to_string(n - 1) + " from rank ",
                                        " with CRC32C 0x", "where its sender computed 0x"});
    }
  }
}

TEST_CASE("checksums: bytes changed on the way are the same error on every rank") {
  on_world_and_backwards([](const redist::mpi_communicator& comm) {
    const int r = comm.rank(), n = comm.size();
    if (n == 1) return;  // nothing travels
    const int hooked = n / 2;
    flipped = false;
    if (r == hooked) redist::testing::arrival_hook = &flip_once;
    const auto o = outcome_of([&] {
      (void)redist::redistribute(comm, make_batch(held_by(r, n)), wanted_by(r, n), {.checksums = true});
    });
    redist::testing::arrival_hook = nullptr;
    redist::test::check_agreed_error(o, comm, {"arrived on rank " + std::to_string(hooked) + " from rank "});
    // The same with checksums off: the changed byte goes unnoticed (what the option is for).
    flipped = false;
    if (r == hooked) redist::testing::arrival_hook = &flip_once;
    std::string problem;
    const auto quiet = outcome_of([&] {
      problem =
          problem_in(redist::redistribute(comm, make_batch(held_by(r, n)), wanted_by(r, n)), wanted_by(r, n));
    });
    redist::testing::arrival_hook = nullptr;
    CHECK(all_ranks(!quiet.redist_error, comm.native()));
    CHECK(all_ranks(problem.empty() == (r != hooked), comm.native()));
    check_exact(comm, redist::plan_pattern::one_hop);  // the communicator works afterwards
  });
}

TEST_CASE(
    "checksums: copies of a payload that differ between their holders are refused before any byte moves") {
  on_world_and_backwards([](const redist::mpi_communicator& comm) {
    const int r = comm.rank(), n = comm.size();
    if (n == 1) return;
    // The last rank's copy of id 100 * ((n - 1 + 1) % n) + 1 = 1 differs in one element.
    const int odd = n - 1;
    const sample_id copied = 100 * static_cast<sample_id>((odd + 1) % n) + 1;
    batch out = make_batch({});
    const auto o = outcome_of([&] {
      out = redist::redistribute(comm, make_batch(held_by(r, n), r == odd), wanted_by(r, n),
                                 {.checksums = true});
    });
    redist::test::check_agreed_error(
        o, comm,
        {"redist::redistribute: checksums: id " + std::to_string(copied) +
             ", key 'v' differs between its copies: rank ",
         "rank " + std::to_string(odd) + " holds 0x", "(replicas must carry equal bytes)"});
    CHECK(all_ranks(out.size() == 0, comm.native()));
    check_exact(comm, redist::plan_pattern::one_hop);
  });
}

TEST_CASE("checksums: the ranks must agree on the option, and it needs exact staging") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int r = comm.rank(), n = comm.size();
  const auto off_on_last = outcome_of([&] {
    (void)redist::redistribute(comm, make_batch(held_by(r, n)), wanted_by(r, n), {.checksums = r != n - 1});
  });
  if (n > 1)
    redist::test::check_agreed_error(
        off_on_last, comm,
        {"calls differ in checksums", "rank " + std::to_string(n - 1) + " passes checksums false"});
  const auto lossy = outcome_of([&] {
    (void)redist::redistribute<redist::float32_staging>(comm, make_batch(held_by(r, n)), wanted_by(r, n),
                                                        {.allow_lossy = true, .checksums = true});
  });
  redist::test::check_agreed_error(lossy, comm, {"checksums compare exact bytes"});
  check_exact(comm, redist::plan_pattern::one_hop);
}
