// MPI tests of redist::redistribute(): seeded random producer/consumer layouts on the world, on a
// communicator numbered backwards and on a sub-communicator; every plan pattern x every staging, tiny staging
// budgets, the plan-based form and policy substitution. Every byte is checked against contents computed
// independently.
#include <doctest/doctest.h>
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "mpi_test.hpp"
#include "random_layouts.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/plan/steps.hpp"
#include "redist/redistribute.hpp"

namespace {

using redist::sample_id;
using redist::test::all_patterns;
using redist::test::all_ranks;
using redist::test::contents;
using redist::test::layout;
using redist::test::layout_limits;
using redist::test::list_string;
using redist::test::mix;
using redist::test::one_call_problem;
using redist::test::pattern_name;
using redist::test::plan_based_problem;
using redist::test::random_layout;

std::vector<std::string> all_keys() { return redist::test::all_keys(contents{}); }

template <class Staging>
constexpr bool narrow_values = std::is_same_v<Staging, redist::float32_staging>;
template <class Staging>
std::string staging_name() {
  return narrow_values<Staging> ? "float32_staging" : "byte_staging";
}

// For one layout and one staging, on one communicator: every pattern x ranks_per_node 1 and 2, keys explicit
// (a custom order, or a subset) or the default. Agreed over `raw`, then checked on every rank.
struct sweep {
  MPI_Comm raw;
  const redist::mpi_communicator& comm;

  template <class Staging>
  void run(std::uint64_t case_seed, const layout_limits& lim, std::size_t max_staging_bytes = 256u << 20) {
    const layout L = random_layout(case_seed, comm.size(), lim);
    const contents c{case_seed, narrow_values<Staging>, lim.max_len};
    for (auto pattern : all_patterns)
      for (int rpn : {1, 2}) {
        redist::redistribute_options opts{
            .max_staging_bytes = max_staging_bytes, .pattern = pattern, .ranks_per_node = rpn};
        switch (mix(case_seed, static_cast<std::uint64_t>(pattern), static_cast<std::uint64_t>(rpn)) % 3) {
          case 0:
            break;  // every key, ascending by name
          case 1:
            opts.keys = {"tokens", "mask", "hidden", "logprobs"};
            break;
          default:
            opts.keys = {"mask", "tokens"};
        }
        const std::string problem = one_call_problem<Staging>(comm, L, c, opts);
        const bool ok = all_ranks(problem.empty(), raw);
        INFO(staging_name<Staging>() << ", " << pattern_name(pattern) << ", ranks_per_node " << rpn
                                     << ", max_staging_bytes " << max_staging_bytes << ", keys "
                                     << list_string(opts.keys) << ", case seed " << case_seed << ", rank "
                                     << comm.rank() << "/" << comm.size() << "\n"
                                     << L.describe());
        CHECK_MESSAGE(ok, "this rank: " << (problem.empty() ? "ok" : problem));
      }
  }
};

// Rank r holds ids 1000r+1 .. 1000r+3 and wants those of rank r+1 (mod n), in reverse: with two ranks or
// more, every rank receives from another.
layout ring_layout(int n) {
  layout L;
  L.ranks = n;
  const auto un = static_cast<std::size_t>(n);
  L.held.resize(un);
  L.wanted.resize(un);
  L.bare.assign(un, 0);
  L.key_order.assign(un, {3, 0, 2, 1});
  for (int r = 0; r < n; ++r)
    for (sample_id i = 1; i <= 3; ++i)
      L.held[static_cast<std::size_t>(r)].push_back(1000u * static_cast<sample_id>(r) + i);
  for (std::size_t r = 0; r < un; ++r)
    L.wanted[r].assign(L.held[(r + 1) % un].rbegin(), L.held[(r + 1) % un].rend());
  L.producers = L.consumers = "ring";
  return L;
}

// The one-call form on layout L, byte staging, every pattern, with every key (the default) and with one.
void check_every_pattern(const redist::mpi_communicator& comm, const layout& L) {
  for (auto pattern : all_patterns)
    for (const std::vector<std::string>& keys :
         {std::vector<std::string>{}, std::vector<std::string>{"tokens"}}) {
      redist::redistribute_options opts{.pattern = pattern};
      opts.keys = keys;
      const std::string problem = one_call_problem<redist::byte_staging>(comm, L, {9, false, 5}, opts);
      const bool ok = all_ranks(problem.empty());
      INFO(pattern_name(pattern) << ", keys " << list_string(keys) << "\n" << L.describe());
      CHECK_MESSAGE(ok, "this rank: " << (problem.empty() ? "ok" : problem));
    }
}

// ---- policy substitution ----

struct counting_policy {
  using step_type = redist::all_to_all_step;
  static inline int calls = 0;
  template <class Context>
  static void run(Context& ctx, const redist::all_to_all_step& st) {
    ++calls;
    redist::all_to_all_policy<redist::byte_staging>::run(ctx, st);
  }
};

void run_sweeps(MPI_Comm raw, std::uint64_t seed, int cases) {
  const redist::mpi_communicator comm(raw);
  sweep s{raw, comm};
  for (int i = 0; i < cases; ++i) {
    const std::uint64_t case_seed = mix(seed, static_cast<std::uint64_t>(i));
    s.run<redist::byte_staging>(case_seed, {});
    s.run<redist::float32_staging>(case_seed, {});
  }
}

}  // namespace

TEST_CASE("redistribute: random layouts on the world, every pattern x every staging") {
  REDIST_AGREED_SEED(seed);
  run_sweeps(MPI_COMM_WORLD, seed, 4);
}

TEST_CASE("redistribute: a communicator numbered backwards") {
  REDIST_AGREED_SEED(seed);
  const auto reversed = redist::test::reversed_world();
  run_sweeps(reversed.get(), mix(seed, 1), 2);
}

TEST_CASE("redistribute: a sub-communicator of the odd ranks") {
  REDIST_AGREED_SEED(seed);
  const auto odd = redist::test::odd_ranks();
  if (odd.is_member()) run_sweeps(odd.get(), mix(seed, 2), 2);
  CHECK(all_ranks(true));  // non-members wait here for the members
}

TEST_CASE("redistribute: tiny staging budgets force many rounds") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  sweep s{MPI_COMM_WORLD, comm};
  const std::uint64_t case_seed = mix(seed, 3);
  s.run<redist::byte_staging>(case_seed, {.max_block = 3, .max_len = 4}, 64);
  s.run<redist::float32_staging>(case_seed, {.max_block = 3, .max_len = 4}, 64);
  // One byte: a round per byte (per element with float32 staging); a small layout keeps that quick.
  s.run<redist::byte_staging>(case_seed, {.max_block = 2, .max_len = 2}, 1);
  s.run<redist::float32_staging>(case_seed, {.max_block = 2, .max_len = 2}, 1);
}

TEST_CASE("redistribute: large keys move one exchange per key, also in rounds") {
  // Thousands of tokens per sequence put well over 64 KiB per rank and key on the wire, where byte staging
  // exchanges each key on its own (straight into the output when the order allows).
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  sweep s{MPI_COMM_WORLD, comm};
  const std::uint64_t case_seed = mix(seed, 4);
  s.run<redist::byte_staging>(case_seed, {.max_block = 4, .max_len = 8000});
  s.run<redist::byte_staging>(case_seed, {.max_block = 4, .max_len = 8000}, 100000);
}

TEST_CASE("redistribute: the plan-based form adds exactly the wanted samples to the store") {
  REDIST_AGREED_SEED(seed);
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  for (int i = 0; i < 2; ++i) {
    const std::uint64_t case_seed = mix(seed, 4, static_cast<std::uint64_t>(i));
    const layout L = random_layout(case_seed, comm.size(), {});
    for (auto pattern : all_patterns)
      for (const std::vector<std::string>& keys : {all_keys(), std::vector<std::string>{"mask", "tokens"}}) {
        const int rpn = 1 + (i + static_cast<int>(pattern)) % 2;
        const std::string byte_problem =
            plan_based_problem<redist::byte_staging>(comm, L, {case_seed, false, 5}, pattern, rpn, keys);
        const std::string f32_problem =
            plan_based_problem<redist::float32_staging>(comm, L, {case_seed, true, 5}, pattern, rpn, keys);
        const bool byte_ok = all_ranks(byte_problem.empty());
        const bool f32_ok = all_ranks(f32_problem.empty());
        INFO(pattern_name(pattern) << ", ranks_per_node " << rpn << ", keys " << list_string(keys)
                                   << ", case seed " << case_seed << "\n"
                                   << L.describe());
        CHECK_MESSAGE(byte_ok, "byte_staging on this rank: " << (byte_problem.empty() ? "ok" : byte_problem));
        CHECK_MESSAGE(f32_ok, "float32_staging on this rank: " << (f32_problem.empty() ? "ok" : f32_problem));
      }
  }
}

TEST_CASE("redistribute: a policy replaces the default policy of its step type") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const layout L = ring_layout(comm.size());
  const contents c{7, false, 5};
  const int expected_steps = comm.size() > 1 ? 1 : 0;  // one all-to-all step when anything moves

  counting_policy::calls = 0;
  std::size_t steps = 0;
  const std::string plan_problem = plan_based_problem<redist::byte_staging, counting_policy>(
      comm, L, c, redist::plan_pattern::one_hop, 1, all_keys(), {}, &steps);
  const int plan_calls = counting_policy::calls;

  counting_policy::calls = 0;
  const std::string call_problem = one_call_problem<redist::byte_staging, counting_policy>(comm, L, c, {});
  const int call_calls = counting_policy::calls;

  const bool ok = all_ranks(plan_problem.empty() && call_problem.empty() &&
                            steps == static_cast<std::size_t>(expected_steps) &&
                            plan_calls == expected_steps && call_calls == expected_steps);
  INFO("this rank: plan-based: " << plan_problem << "; one-call: " << call_problem << "; plan steps " << steps
                                 << ", calls " << plan_calls << " and " << call_calls << ", expected "
                                 << expected_steps);
  CHECK(ok);
}

// A rank holding a batch without keys that wants nothing must get an empty batch with the keys, like the
// others, not an error of its own after the others have returned.
TEST_CASE("redistribute: a rank that declares no keys and wants nothing gets an empty batch") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  if (n == 1) return;  // nobody else to declare the keys
  layout L = ring_layout(n);
  const auto last = static_cast<std::size_t>(n - 1);
  L.held[last].clear();
  L.bare[last] = 1;
  L.wanted[last].clear();
  for (std::size_t r = 0; r < last; ++r) L.wanted[r] = L.held[(r + 1) % last];
  check_every_pattern(comm, L);
}

// Every rank declares the keys and holds no sample: there is nothing to move, and every rank gets an empty
// batch with the keys (the default: every key the ranks declare).
TEST_CASE("redistribute: no samples anywhere") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  layout L = ring_layout(comm.size());
  for (auto& h : L.held) h.clear();
  for (auto& w : L.wanted) w.clear();
  check_every_pattern(comm, L);
}
