// MPI tests of the one agreement: for every option of every collective op, one rank passing another value
// makes every rank throw the same redist::error naming the field and the rank, with nothing received and no
// store changed, and the next call works; errors met while planning are agreed too, not thrown on some ranks
// only.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/metadata_codec.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/dispatch.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/redistribute.hpp"
#include "redist/seqpar.hpp"
#include "redist/staging/workspace.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;
using batch = redist::sequence_batch<>;
using redist::test::all_ranks;
using redist::test::outcome;
using redist::test::outcome_of;

// Rank r holds ids 10r+1 and 10r+2, keys "a" (i64, 2 + id % 3 tokens) and "b" (f32 [2], 1 token), element e
// of (id, key) being 1000 * id + e; it wants the ids of rank r+1 (mod n), second first.
std::int64_t tokens_of(sample_id id, int key) { return key == 0 ? 2 + static_cast<std::int64_t>(id % 3) : 1; }

batch ring_batch(int r) {
  const std::vector<sample_id> ids{10 * static_cast<sample_id>(r) + 1, 10 * static_cast<sample_id>(r) + 2};
  std::vector<batch::field> fields;
  for (int k = 0; k < 2; ++k) {
    redist::seqlen_table lens;
    std::int64_t rows = 0;
    for (sample_id id : ids) {
      const std::int64_t t = tokens_of(id, k);
      lens.push_back(std::span(&t, 1));
      rows += tokens_of(id, k);
    }
    if (k == 0) {
      host_tensor t(dtype::i64, {rows});
      auto v = t.values<std::int64_t>();
      for (std::size_t i = 0, at = 0; i < ids.size(); ++i)
        for (std::int64_t e = 0; e < tokens_of(ids[i], 0); ++e)
          v[at++] = static_cast<std::int64_t>(1000 * ids[i]) + e;
      fields.push_back({"a", dtype::i64, {}, std::move(lens), std::move(t)});
    } else {
      host_tensor t(dtype::f32, {rows, 2});
      auto v = t.values<float>();
      for (std::size_t i = 0; i < ids.size(); ++i)
        for (std::size_t e = 0; e < 2; ++e) v[2 * i + e] = static_cast<float>(1000 * ids[i] + e);
      fields.push_back({"b", dtype::f32, {2}, std::move(lens), std::move(t)});
    }
  }
  return batch(ids, std::move(fields));
}

// The same ids, keys and seqlens, without tensors.
batch metadata_only(const batch& b) { return redist::decode_metadata(redist::encode_metadata(b)); }

std::vector<sample_id> ring_wanted(int r, int n) {
  const auto next = static_cast<sample_id>((r + 1) % n);
  return {10 * next + 2, 10 * next + 1};
}

// Empty when `got` holds exactly `wanted` with both keys, element by element as ring_batch made them.
std::string ring_problem(const batch& got, const std::vector<sample_id>& wanted) {
  if (!std::equal(got.ids().begin(), got.ids().end(), wanted.begin(), wanted.end())) return "ids differ";
  const auto a = got.data("a").values<std::int64_t>();
  const auto b = got.data("b").values<float>();
  std::size_t at = 0;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    for (std::int64_t e = 0; e < tokens_of(wanted[i], 0); ++e)
      if (at >= a.size() || a[at++] != static_cast<std::int64_t>(1000 * wanted[i]) + e)
        return "key a differs";
    for (std::size_t e = 0; e < 2; ++e)
      if (b[2 * i + e] != static_cast<float>(1000 * wanted[i] + e)) return "key b differs";
  }
  return at == a.size() ? "" : "key a has extra rows";
}

using redist::test::check_agreed_error;

// After an error: the one-call ring on the same communicator, checked byte for byte, on every rank.
void check_still_works(const redist::mpi_communicator& comm) {
  std::string problem;
  const outcome o = outcome_of([&] {
    const auto wanted = ring_wanted(comm.rank(), comm.size());
    problem = ring_problem(redist::redistribute(comm, ring_batch(comm.rank()), wanted), wanted);
  });
  INFO("after the error: " << o.message << " " << problem);
  CHECK(all_ranks(!o.redist_error && o.message == "no error" && problem.empty(), comm.native()));
}

// The one-call form with opts on every rank but `bad`, which passes bad_opts (and Staging there when
// BadStaging differs).
template <class BadStaging = redist::byte_staging>
outcome one_call(const redist::mpi_communicator& comm, int bad, const redist::redistribute_options& opts,
                 const redist::redistribute_options& bad_opts) {
  const batch local = ring_batch(comm.rank());
  const auto wanted = ring_wanted(comm.rank(), comm.size());
  return outcome_of([&] {
    if (comm.rank() == bad)
      (void)redist::redistribute<BadStaging>(comm, local, wanted, bad_opts);
    else
      (void)redist::redistribute(comm, local, wanted, opts);
  });
}

// f on the world and on the world numbered backwards.
template <class F>
void on_world_and_backwards(F f) {
  f(redist::mpi_communicator(MPI_COMM_WORLD));
  const redist::test::owned_comm reversed = redist::test::reversed_world();
  f(redist::mpi_communicator(reversed.get()));
}

std::string passes(int rank, const std::string& what) {
  return "rank " + std::to_string(rank) + " passes " + what;
}

}  // namespace

TEST_CASE("one-call redistribute: each option differing on one rank is named, on every rank") {
  on_world_and_backwards([&](const redist::mpi_communicator& comm) {
    const int n = comm.size();
    if (n < 2) return;  // nobody to differ from
    const int bad = n - 1;
    const redist::redistribute_options base{.keys = {"a", "b"}};
    auto with = [&](auto change) {
      redist::redistribute_options o = base;
      change(o);
      return o;
    };
    struct option_case {
      const char* field;
      redist::redistribute_options bad;
      std::string shown;
    };
    const option_case cases[] = {
        {"pattern", with([](auto& o) { o.pattern = redist::plan_pattern::gather_scatter; }),
         "pattern gather_scatter"},
        {"keys", with([](auto& o) {
           o.keys = {"b", "a"};
         }),
         "keys [b, a]"},
        {"keys", with([](auto& o) { o.keys = {"a"}; }), "keys [a]"},
        {"max_staging_bytes", with([](auto& o) { o.max_staging_bytes = 64; }), "max_staging_bytes 64"},
        {"ranks_per_node", with([](auto& o) { o.ranks_per_node = 2; }), "ranks_per_node 2"},
        {"allow_lossy", with([](auto& o) { o.allow_lossy = true; }), "allow_lossy true"},
    };
    for (const auto& k : cases) {
      INFO("option " << k.field << ", bad rank " << bad);
      check_agreed_error(
          one_call(comm, bad, base, k.bad), comm,
          {"redist::redistribute: the ranks' calls differ in " + std::string(k.field), passes(bad, k.shown)});
      check_still_works(comm);
    }
    INFO("staging, bad rank " << bad);
    check_agreed_error(one_call<redist::float32_staging>(comm, bad, base, base), comm,
                       {"the ranks' calls differ in staging", passes(bad, "staging float32_staging")});
    check_still_works(comm);
  });
}

TEST_CASE("one-call redistribute: a plan that cannot be made fails alike on every rank") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  const batch local = ring_batch(comm.rank());
  const auto wanted = ring_wanted(comm.rank(), n);
  check_agreed_error(
      outcome_of([&] { (void)redist::redistribute(comm, local, wanted, {.ranks_per_node = 0}); }), comm,
      {"ranks_per_node is 0, must be at least 1"});
  check_still_works(comm);
  check_agreed_error(outcome_of([&] {
                       (void)redist::redistribute(comm, local, wanted, {.keys = {"a", "zzz"}});
                     }),
                     comm, {"unknown key 'zzz'"});
  check_still_works(comm);
  check_agreed_error(outcome_of([&] {
                       (void)redist::redistribute(comm, local, wanted, {.keys = {"a", "a"}});
                     }),
                     comm, {"key 'a' requested twice"});
  check_still_works(comm);
}

TEST_CASE("one-call redistribute: a rank whose batch holds metadata only, while others want its samples") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n < 2) return;
  const int bad = 1;
  batch local = ring_batch(comm.rank());
  if (comm.rank() == bad) local = metadata_only(local);
  check_agreed_error(
      outcome_of([&] { (void)redist::redistribute(comm, local, ring_wanted(comm.rank(), n)); }), comm,
      {"rank " + std::to_string(bad) + " must send id " + std::to_string(10 * bad + 2)});
  check_still_works(comm);
}

TEST_CASE("one-call redistribute: per-sample metadata survives a rank that holds nothing") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  // Rank 0 holds nothing and wants nothing; every other rank tags its samples' origin.
  batch local;
  if (comm.rank() != 0) {
    local = ring_batch(comm.rank());
    local.set_metadata("origin", {std::to_string(comm.rank()), std::to_string(comm.rank())});
  }
  std::vector<sample_id> wanted;
  const int from = comm.rank() + 1 < n ? comm.rank() + 1 : 1;
  if (comm.rank() != 0 && n > 1) wanted = {10 * static_cast<sample_id>(from) + 1};
  std::string problem;
  const outcome o = outcome_of([&] {
    const batch got = redist::redistribute(comm, local, wanted);
    const auto it = got.metadata().find("origin");
    if (n > 1 && (it == got.metadata().end() ||
                  it->second != std::vector<std::string>(wanted.size(), std::to_string(from))))
      problem = "the metadata 'origin' is missing or wrong";
  });
  INFO(o.message << " " << problem);
  CHECK(all_ranks(!o.redist_error && o.message == "no error" && problem.empty(), comm.native()));
}

TEST_CASE("plan-based redistribute: staging, budget or allow_lossy differing on one rank, stores unchanged") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n < 2) return;
  const int bad = n - 1;
  std::vector<batch> metas;
  for (int r = 0; r < n; ++r) metas.push_back(metadata_only(ring_batch(r)));
  redist::catalog cat;
  for (int r = 0; r < n; ++r) cat.add(metas[static_cast<std::size_t>(r)], r);
  std::vector<redist::id_list> wants;
  for (int r = 0; r < n; ++r) wants.push_back(ring_wanted(r, n));
  const std::vector<std::string> keys{"a", "b"};
  const auto plan = redist::plan_all_to_all(redist::storage_tracker::from_batches(metas), wants, keys);
  auto run = [&](auto&& call) {
    redist::sample_store<> store;
    store.add(ring_batch(comm.rank()));
    const std::size_t before = store.pairs();
    const outcome o = outcome_of([&] { call(store); });
    CHECK(all_ranks(store.pairs() == before, comm.native()));
    return o;
  };
  const bool me_bad = comm.rank() == bad;
  check_agreed_error(run([&](auto& store) {
                       if (me_bad)
                         redist::redistribute<redist::float32_staging>(comm, store, plan, cat);
                       else
                         redist::redistribute(comm, store, plan, cat);
                     }),
                     comm, {"differ in staging", passes(bad, "staging float32_staging")});
  check_agreed_error(run([&](auto& store) {
                       redist::redistribute(comm, store, plan, cat,
                                            {.max_staging_bytes = me_bad ? 64u : 1u << 20});
                     }),
                     comm, {"differ in max_staging_bytes", passes(bad, "max_staging_bytes 64")});
  check_agreed_error(
      run([&](auto& store) { redist::redistribute(comm, store, plan, cat, {.allow_lossy = me_bad}); }), comm,
      {"differ in allow_lossy", passes(bad, "allow_lossy true")});
  check_still_works(comm);
}

TEST_CASE("dispatch: ranks that pass different roots fail alike instead of hanging") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n < 2) return;
  const int bad = n - 1;
  using tree = redist::nested<>;
  std::vector<tree> items;
  const int root = comm.rank() == bad ? 1 : 0;
  if (comm.rank() == root)
    for (int r = 0; r < n; ++r) items.emplace_back(host_tensor(dtype::i32, {r + 1}));
  check_agreed_error(outcome_of([&] { (void)redist::dispatch(comm, items, root); }), comm,
                     {"redist::dispatch: the ranks' calls differ in root", passes(bad, "root 1")});
  // The next dispatch works: rank r gets a tensor of r + 1 elements.
  items.clear();
  if (comm.rank() == 0)
    for (int r = 0; r < n; ++r) items.emplace_back(host_tensor(dtype::i32, {r + 1}));
  bool ok = false;
  const outcome o = outcome_of([&] {
    const tree got = redist::dispatch(comm, items, 0);
    ok = got.is_tensor() && got.tensor().extent(0) == comm.rank() + 1;
  });
  CHECK(all_ranks(ok && !o.redist_error, comm.native()));
}

TEST_CASE("different ops on one rank fail alike: the op is part of every call's description") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n < 2) return;
  const int bad = n - 1;
  using tree = redist::nested<>;
  const outcome o = outcome_of([&] {
    if (comm.rank() == bad)
      (void)redist::dispatch(comm, std::vector<tree>{}, 0);
    else
      redist::seqpar::rotating_broadcast(comm, tree{}, [](int, const tree&) {});
  });
  check_agreed_error(o, comm, {"differ in op", passes(bad, "op redist::dispatch")});
  check_still_works(comm);
}

TEST_CASE(
    "redistribute_into: a result of the same layout is filled in place, another is rebuilt, an error keeps "
    "it") {
  on_world_and_backwards([&](const redist::mpi_communicator& comm) {
    const int n = comm.size();
    const batch local = ring_batch(comm.rank());
    const auto wanted = ring_wanted(comm.rank(), n);
    redist::workspace staging;
    const redist::redistribute_options opts{.keys = {"a", "b"}, .staging = &staging};
    batch out;
    std::string problem;
    const void* a_data = nullptr;
    const void* b_data = nullptr;
    const outcome first = outcome_of([&] {
      redist::redistribute_into(comm, local, wanted, out, opts);
      problem = ring_problem(out, wanted);
      a_data = out.data("a").data();
      b_data = out.data("b").data();
      // Again, after spoiling the bytes: every byte rewritten, into the same tensors.
      for (auto& v : out.data("a").values<std::int64_t>()) v = -1;
      redist::redistribute_into(comm, local, wanted, out, opts);
      if (problem.empty()) problem = ring_problem(out, wanted);
      if (out.data("a").data() != a_data || out.data("b").data() != b_data)
        problem = "the tensors were replaced";
    });
    INFO(first.message << " " << problem);
    CHECK(all_ranks(!first.redist_error && first.message == "no error" && problem.empty(), comm.native()));

    // Another layout (the ids in the other order): a new result, correct.
    std::vector<sample_id> other(wanted.rbegin(), wanted.rend());
    const outcome second = outcome_of([&] {
      redist::redistribute_into(comm, local, other, out, opts);
      problem = ring_problem(out, other);
    });
    INFO(second.message << " " << problem);
    CHECK(all_ranks(!second.redist_error && problem.empty(), comm.native()));

    // An error before any byte moves (one rank's budget differs) leaves out as it was, tensors included.
    if (n > 1) {
      a_data = out.data("a").data();
      redist::redistribute_options bad = opts;
      if (comm.rank() == n - 1) bad.max_staging_bytes = 64;
      check_agreed_error(outcome_of([&] { redist::redistribute_into(comm, local, other, out, bad); }), comm,
                         {"differ in max_staging_bytes"});
      problem = ring_problem(out, other);
      if (out.data("a").data() != a_data) problem = "the tensors were replaced";
      INFO(problem);
      CHECK(all_ranks(problem.empty(), comm.native()));
    }
  });
}

TEST_CASE(
    "redistribute_into with a plan cache: a repeated request reuses the plan, another is planned anew") {
  on_world_and_backwards([&](const redist::mpi_communicator& comm) {
    const int n = comm.size();
    const batch local = ring_batch(comm.rank());
    const auto wanted = ring_wanted(comm.rank(), n);
    const std::vector<sample_id> other(wanted.rbegin(), wanted.rend());
    redist::plan_cache plans;
    // The cache is each rank's own: rank 0 passes none, and nothing changes for the others.
    const redist::redistribute_options opts{.keys = {"a", "b"}, .plans = comm.rank() == 0 ? nullptr : &plans};
    batch out;
    std::vector<std::size_t> reuses;
    std::string problem;
    const outcome o = outcome_of([&] {
      for (const auto* ids : {&wanted, &wanted, &other, &other, &wanted}) {
        redist::redistribute_into(comm, local, *ids, out, opts);
        if (problem.empty()) problem = ring_problem(out, *ids);
        reuses.push_back(plans.reuses());
      }
    });
    INFO(o.message << " " << problem);
    CHECK(all_ranks(!o.redist_error && o.message == "no error" && problem.empty(), comm.native()));
    const std::vector<std::size_t> expected =
        comm.rank() == 0 ? std::vector<std::size_t>(5, 0) : std::vector<std::size_t>{0, 1, 1, 2, 2};
    CHECK(reuses == expected);
  });
}

TEST_CASE("redistribute_into with a plan cache: a repeated request is checked again where it must be") {
  on_world_and_backwards([&](const redist::mpi_communicator& comm) {
    const int n = comm.size();
    if (n < 2) return;
    const int bad = 1;
    const auto wanted = ring_wanted(comm.rank(), n);
    redist::plan_cache plans;
    const redist::redistribute_options opts{.plans = &plans};
    batch out;
    const outcome first = outcome_of([&] {
      redist::redistribute_into<redist::float32_staging>(comm, ring_batch(comm.rank()), wanted, out, opts);
    });
    CHECK(all_ranks(first.message == "no error" && ring_problem(out, wanted).empty(), comm.native()));

    // The same metadata from a batch without tensors: the request is the last call's, the batch is not.
    batch local = ring_batch(comm.rank());
    if (comm.rank() == bad) local = metadata_only(local);
    check_agreed_error(outcome_of([&] {
                         redist::redistribute_into<redist::float32_staging>(comm, local, wanted, out, opts);
                       }),
                       comm,
                       {"rank " + std::to_string(bad) + " must send id " + std::to_string(10 * bad + 2)});
    CHECK(all_ranks(ring_problem(out, wanted).empty(), comm.native()));

    // The same layout with a value float32 cannot carry: the values are checked on every call.
    local = ring_batch(comm.rank());
    if (comm.rank() == bad) local.data("a").values<std::int64_t>()[0] = (std::int64_t{1} << 24) + 1;
    check_agreed_error(outcome_of([&] {
                         redist::redistribute_into<redist::float32_staging>(comm, local, wanted, out, opts);
                       }),
                       comm,
                       {"float32_staging would change element 0 of id " + std::to_string(10 * bad + 1)});
    CHECK(all_ranks(ring_problem(out, wanted).empty(), comm.native()));
    CHECK(plans.reuses() == 2);
  });
}
