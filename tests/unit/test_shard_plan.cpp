// Unit tests of redist::plan_shards, shard_scatter's pure plan: owner choice (given ones kept, the rest
// largest first to the least loaded rank), batch boundaries under the byte budget (hand-made cases and random
// ones against a brute-force reference), and every spec error.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "redist/shard.hpp"

namespace {

using redist::dtype;
using redist::plan_shards;
using redist::shard_spec;
using redist::test::error_of;
using sizes = std::vector<std::size_t>;

shard_spec sharded(std::string name, dtype t, std::vector<std::int64_t> shape, int dim,
                   std::optional<int> owner = {}) {
  return {std::move(name), t, std::move(shape), dim, owner};
}

shard_spec replicated(std::string name, dtype t, std::vector<std::int64_t> shape,
                      std::optional<int> owner = {}) {
  return {std::move(name), t, std::move(shape), std::nullopt, owner};
}

std::size_t bytes_of(const shard_spec& s) {
  std::size_t b = redist::size_of(s.dtype);
  for (const std::int64_t e : s.shape) b *= static_cast<std::size_t>(e);
  return b;
}

// The reference owner choice, written as the rule reads: given owners first; then the open specs by bytes
// descending, name ascending, each to the rank with the fewest bytes so far, the lowest such rank.
std::vector<int> reference_owners(const std::vector<shard_spec>& specs, int ranks) {
  std::vector<int> owners(specs.size(), -1);
  sizes load(static_cast<std::size_t>(ranks), 0);
  std::vector<std::size_t> open;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].owner) {
      owners[i] = *specs[i].owner;
      load[static_cast<std::size_t>(*specs[i].owner)] += bytes_of(specs[i]);
    } else {
      open.push_back(i);
    }
  }
  while (!open.empty()) {
    std::size_t pick = 0;
    for (std::size_t k = 1; k < open.size(); ++k) {
      const shard_spec& a = specs[open[k]];
      const shard_spec& b = specs[open[pick]];
      if (bytes_of(a) > bytes_of(b)) pick = k;  // ties: the earliest spec, as open is in spec order
    }
    const std::size_t i = open[pick];
    open.erase(open.begin() + static_cast<std::ptrdiff_t>(pick));
    std::size_t rank = 0;
    for (std::size_t r = 1; r < load.size(); ++r) {
      if (load[r] < load[rank]) rank = r;
    }
    owners[i] = static_cast<int>(rank);
    load[rank] += bytes_of(specs[i]);
  }
  return owners;
}

// Whether specs [first, last) fit the budget as one batch: every rank's bytes to send (a shard per other
// rank, or the whole per other rank when replicated) and to receive are at most `budget`; counted rank by
// rank, tensor by tensor.
bool fits(const std::vector<shard_spec>& specs, const std::vector<int>& owners, std::size_t first,
          std::size_t last, int ranks, std::size_t budget) {
  const auto n = static_cast<std::size_t>(ranks);
  for (std::size_t r = 0; r < n; ++r) {
    std::size_t send = 0;
    std::size_t recv = 0;
    for (std::size_t i = first; i < last; ++i) {
      const std::size_t each = specs[i].shard_dim ? bytes_of(specs[i]) / n : bytes_of(specs[i]);
      if (static_cast<std::size_t>(owners[i]) == r) {
        send += each * (n - 1);
      } else {
        recv += each;
      }
    }
    if (send > budget || recv > budget) return false;
  }
  return true;
}

// Greedy in spec order: a spec joins the open batch when the batch with it still fits, else starts the next.
sizes reference_batches(const std::vector<shard_spec>& specs, const std::vector<int>& owners, int ranks,
                        std::size_t budget) {
  if (specs.empty()) return {0};
  sizes starts{0};
  for (std::size_t i = 1; i < specs.size(); ++i) {
    if (!fits(specs, owners, starts.back(), i + 1, ranks, budget)) starts.push_back(i);
  }
  starts.push_back(specs.size());
  return starts;
}

std::vector<shard_spec> random_specs(std::mt19937_64& rng, int ranks, std::size_t count) {
  const dtype types[] = {dtype::f32, dtype::bf16, dtype::i8, dtype::f64, dtype::i64, dtype::boolean};
  std::vector<shard_spec> specs;
  for (std::size_t i = 0; i < count; ++i) {
    shard_spec s;
    s.name = "t" + std::to_string(rng() % 1000) + "_" + std::to_string(i);
    s.dtype = types[rng() % 6];
    const std::size_t dims = rng() % 4;
    for (std::size_t d = 0; d < dims; ++d) s.shape.push_back(static_cast<std::int64_t>(rng() % 5));
    if (!s.shape.empty() && rng() % 3 != 0) {
      const std::size_t k = rng() % s.shape.size();
      s.shape[k] *= ranks;
      s.shard_dim = static_cast<int>(k);
    }
    if (rng() % 4 == 0) s.owner = static_cast<int>(rng() % static_cast<std::uint64_t>(ranks));
    specs.push_back(std::move(s));
  }
  return specs;
}

}  // namespace

TEST_CASE("owners: largest first to the least loaded rank, ties in spec order and by lowest rank") {
  // 4 ranks. Bytes: a 400, b 400, c 256, d 100, e 100 (f32), f 0.
  const std::vector<shard_spec> specs = {
      replicated("e", dtype::f32, {25}),    sharded("b", dtype::f32, {100}, 0),
      sharded("a", dtype::i8, {4, 100}, 1), replicated("f", dtype::f64, {0, 3}),
      sharded("c", dtype::i64, {4, 8}, 0),  replicated("d", dtype::bf16, {50}),
  };
  // b -> 0, a -> 1 (a tie broken by spec order), c -> 2, e -> 3 (before d, by spec order); ranks now hold
  // 400, 400, 256, 100: d -> 3, and then f -> 3 too (200 < 256).
  const redist::shard_plan plan = plan_shards(specs, 4);
  CHECK(plan.owners == std::vector<int>{3, 0, 1, 3, 2, 3});
  CHECK(plan.owners == reference_owners(specs, 4));
}

TEST_CASE("owners: given ones stand and count toward the balance") {
  const std::vector<shard_spec> specs = {
      replicated("big", dtype::f32, {1000}, 0),  // 4000 bytes on rank 0
      replicated("x", dtype::f32, {100}),        // the rest avoid rank 0
      replicated("y", dtype::f32, {100}),       replicated("z", dtype::f32, {100}, 2),
      replicated("w", dtype::f32, {50}),
  };
  const redist::shard_plan plan = plan_shards(specs, 3);
  // x -> 1 (ranks hold 4000, 0, 400), y -> 1 (400, 400: lowest rank), w -> 2.
  CHECK(plan.owners == std::vector<int>{0, 1, 1, 2, 2});
  CHECK(plan.owners == reference_owners(specs, 3));
  CHECK(plan.batches() == 1);
}

TEST_CASE("batches: under the budget in spec order; a tensor over it alone; zero-sized ones join") {
  // 2 ranks, given owners. Sharded 1000-byte tensors: the owner sends 500, the other receives 500.
  std::vector<shard_spec> specs = {
      sharded("a", dtype::u8, {1000}, 0, 0),       sharded("b", dtype::u8, {1000}, 0, 1),  // 500 each way
      sharded("c", dtype::u8, {1000}, 0, 0),        // rank 0 sends 1000
      sharded("huge", dtype::u8, {10, 400}, 1, 1),  // 2000: alone
      replicated("z", dtype::f32, {0}, 0),          // 0 bytes: joins
      replicated("r", dtype::u8, {600}, 0),         // 600 each way
      replicated("s", dtype::u8, {401}, 0),         // rank 0 would send 1001: starts the next batch
      replicated("t", dtype::u8, {1}, 1),
  };
  const redist::shard_plan plan = plan_shards(specs, 2, {.max_batch_bytes = 1000});
  CHECK(plan.batch_starts == sizes{0, 3, 4, 6, 8});
  CHECK(plan.batches() == 4);
  CHECK(plan.batch_starts == reference_batches(specs, plan.owners, 2, 1000));

  // A budget of 0: every tensor alone, z too (it cannot join huge's batch, which is over the budget, and r
  // cannot join it).
  const redist::shard_plan zero = plan_shards(specs, 2, {.max_batch_bytes = 0});
  CHECK(zero.batch_starts == sizes{0, 1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(zero.batch_starts == reference_batches(specs, zero.owners, 2, 0));

  // One rank: nothing crosses, one batch whatever the budget.
  for (shard_spec& s : specs) s.owner.reset();
  const redist::shard_plan one = plan_shards(specs, 1, {.max_batch_bytes = 0});
  CHECK(one.batch_starts == sizes{0, 8});
  CHECK(one.owners == std::vector<int>(8, 0));
}

TEST_CASE("batches: receive bytes count too, when every rank owns something") {
  // 3 ranks, each owns one replicated 100-byte tensor: each sends 200 and receives 200.
  const std::vector<shard_spec> specs = {replicated("a", dtype::u8, {100}, 0),
                                         replicated("b", dtype::u8, {100}, 1),
                                         replicated("c", dtype::u8, {100}, 2)};
  CHECK(plan_shards(specs, 3, {.max_batch_bytes = 200}).batch_starts == sizes{0, 3});
  // A budget of 199: each tensor alone (its owner sends 200).
  CHECK(plan_shards(specs, 3, {.max_batch_bytes = 199}).batch_starts == sizes{0, 1, 2, 3});
  // Sharded 300-byte tensors: owner sends 200, others receive 100 each; with all three, everyone receives
  // 200 and sends 200.
  const std::vector<shard_spec> cut = {
      sharded("a", dtype::u8, {300}, 0, 0), sharded("b", dtype::u8, {300}, 0, 1),
      sharded("c", dtype::u8, {300}, 0, 2), sharded("d", dtype::u8, {3}, 0, 0)};
  CHECK(plan_shards(cut, 3, {.max_batch_bytes = 200}).batch_starts == sizes{0, 3, 4});
  // Budget 150: each of a, b, c alone is over it (its owner sends 200), so each is a batch, and d cannot join
  // c's.
  CHECK(plan_shards(cut, 3, {.max_batch_bytes = 150}).batch_starts == sizes{0, 1, 2, 3, 4});
  CHECK(reference_batches(cut, plan_shards(cut, 3).owners, 3, 150) == sizes{0, 1, 2, 3, 4});
}

TEST_CASE("random specs: owners and batches match the brute-force reference") {
  const std::uint64_t seed = 7;
  INFO("seed=" << seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 300; ++round) {
    const int ranks = 1 + static_cast<int>(rng() % 8);
    const std::vector<shard_spec> specs = random_specs(rng, ranks, rng() % 40);
    const std::size_t budget = rng() % 4 == 0 ? 0 : rng() % 2000;
    INFO("round " << round << ", " << ranks << " ranks, budget " << budget);
    const redist::shard_plan plan = plan_shards(specs, ranks, {.max_batch_bytes = budget});
    const std::vector<int> owners = reference_owners(specs, ranks);
    REQUIRE(plan.owners == owners);
    CHECK(plan.batch_starts == reference_batches(specs, owners, ranks, budget));
    CHECK(plan.batches() == (specs.empty() ? 0 : plan.batch_starts.size() - 1));
  }
}

TEST_CASE("shard_workspace_bytes: send and receive staging of the largest even and odd batches") {
  // 2 ranks, budget 1000: batches {a, b, c}, {huge}, {z, r}, {s, t} (see above).
  const std::vector<shard_spec> specs = {
      sharded("a", dtype::u8, {1000}, 0, 0), sharded("b", dtype::u8, {1000}, 0, 1),
      sharded("c", dtype::u8, {1000}, 0, 0), sharded("huge", dtype::u8, {10, 400}, 1, 1),
      replicated("z", dtype::f32, {0}, 0),   replicated("r", dtype::u8, {600}, 0),
      replicated("s", dtype::u8, {401}, 0),  replicated("t", dtype::u8, {1}, 1),
  };
  const redist::shard_options options{.max_batch_bytes = 1000};
  REQUIRE(plan_shards(specs, 2, options).batch_starts == sizes{0, 3, 4, 6, 8});
  // Rank 0 sends 1000, 0, 600, 401 + 1 flag byte; receives 500, 2000, 0, 1 + 1 flag byte.
  // Even batches: send max(1000, 600) + receive max(500, 0); odd: send max(0, 402) + receive max(2000, 2).
  CHECK(redist::shard_workspace_bytes(specs, 0, 2, options) == 1000 + 402 + 500 + 2000);
  // Rank 1 sends 500, 2000, 0, 1 + 1; receives 1000, 0, 600, 401 + 1.
  CHECK(redist::shard_workspace_bytes(specs, 1, 2, options) == 500 + 2000 + 1000 + 402);
  CHECK(error_of([&] { redist::shard_workspace_bytes(specs, 2, 2, options); }) ==
        "redist::shard_workspace_bytes: rank 2 is out of range for a communicator of size 2");
  CHECK(error_of([&] { redist::shard_workspace_bytes(specs, 0, 1, options); }) ==
        "redist::shard_workspace_bytes: tensor 'b': owner 1 is out of range for a communicator of size 1");
  // One rank: nothing is staged.
  std::vector<shard_spec> alone = specs;
  for (shard_spec& s : alone) s.owner.reset();
  CHECK(redist::shard_workspace_bytes(alone, 0, 1, options) == 0);
}

TEST_CASE("an empty list of specs: no batches") {
  const redist::shard_plan plan = plan_shards({}, 4);
  CHECK(plan.owners.empty());
  CHECK(plan.batches() == 0);
}

TEST_CASE("spec errors name the function, the tensor and what is wrong") {
  using doctest::Contains;
  auto plan = [](std::vector<shard_spec> specs, int ranks = 4) {
    return error_of([&] { plan_shards(specs, ranks); });
  };
  CHECK(plan({sharded("w", dtype::f32, {8, 10}, 1)}) ==
        "redist::plan_shards: tensor 'w': dim 1 of extent 10 does not divide into 4 equal shards (ragged "
        "shards are not supported)");
  CHECK(plan({sharded("w", dtype::f32, {8, 12}, 2)}) ==
        "redist::plan_shards: tensor 'w': shard dim 2 is out of range for a tensor of 2 dims, shape [8, 12]");
  CHECK(
      plan({sharded("w", dtype::f32, {8, 12}, -1)}) ==
      "redist::plan_shards: tensor 'w': shard dim -1 is out of range for a tensor of 2 dims, shape [8, 12]");
  CHECK(plan({sharded("s", dtype::f32, {}, 0)}) ==
        "redist::plan_shards: tensor 's': shard dim 0 is out of range for a tensor of 0 dims, shape []");
  CHECK(plan({replicated("n", dtype::f32, {3, -2})}) ==
        "redist::plan_shards: tensor 'n': extent -2 of dim 1 is negative");
  CHECK(plan({replicated("o", dtype::f32, {4}, 4)}) ==
        "redist::plan_shards: tensor 'o': owner 4 is out of range for a communicator of size 4");
  CHECK(plan({replicated("o", dtype::f32, {4}, -1)}) ==
        "redist::plan_shards: tensor 'o': owner -1 is out of range for a communicator of size 4");
  CHECK(plan({replicated("a", dtype::f32, {1}), replicated("b", dtype::f32, {1}),
              replicated("a", dtype::i8, {2})}) ==
        "redist::plan_shards: tensor name 'a' appears twice (specs 0 and 2)");
  CHECK(plan({replicated("x", static_cast<dtype>(200), {1})}) ==
        "redist::plan_shards: tensor 'x' has an unknown dtype");
  const std::int64_t big = std::int64_t{1} << 40;
  CHECK(plan({replicated("v", dtype::f64, {big, big})}) == "redist::plan_shards: tensor 'v': size overflows");
  CHECK(plan({replicated("v", dtype::u8, {big, 1 << 20}), replicated("u", dtype::u8, {big, 1 << 20})}) ==
        "redist::plan_shards: the tensors' total size times the number of ranks (4) overflows");
  CHECK(plan({}, 0) == "redist::plan_shards: a communicator of 0 ranks");
  // Zero-sized and scalar tensors are fine: a zero extent divides, a scalar is replicated.
  CHECK(plan({sharded("e", dtype::f32, {0, 3}, 0), replicated("s", dtype::f32, {})}) == "no error");
}
