// Fuzz target: plan_shards on fuzzed specs (names that repeat, unknown dtypes, negative and huge extents,
// shard dims and owners in and out of range), rank counts and budgets. An accepted plan must give every
// tensor an owner in range (the given one where given) and cut the specs, in order, into batches that each
// hold one tensor or keep every rank's bytes to send and to receive within the budget, and close a batch
// only when the next tensor would not fit; each checked here against sizes computed independently.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/plan/shard.hpp"

namespace {

std::int64_t extent(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange(0, 7)) {
    case 0:
      return in.ConsumeIntegral<std::int64_t>();
    case 1:
      return std::int64_t{1} << in.ConsumeIntegralInRange(20, 62);
    default:
      return in.ConsumeIntegralInRange<std::int64_t>(-1, 64);
  }
}

// Whether the tensors [first, last) fit the budget on every rank: the independent reading of the rule.
bool fits(const std::vector<redist::shard_spec>& specs, const std::vector<std::size_t>& bytes,
          const std::vector<int>& owners, std::size_t first, std::size_t last, int ranks,
          std::size_t budget) {
  const auto n = static_cast<std::size_t>(ranks);
  for (std::size_t r = 0; r < n; ++r) {
    unsigned __int128 send = 0, receive = 0;
    for (std::size_t i = first; i < last; ++i) {
      const std::size_t each = specs[i].shard_dim ? bytes[i] / n : bytes[i];
      if (static_cast<std::size_t>(owners[i]) == r)
        send += static_cast<unsigned __int128>(each) * (n - 1);
      else
        receive += each;
    }
    if (send > budget || receive > budget) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using redist::fuzz::check;
  FuzzedDataProvider in(data, size);
  const int ranks = in.ConsumeIntegralInRange(0, 9) == 0 ? in.ConsumeIntegralInRange(-1, 1)
                                                         : in.ConsumeIntegralInRange(1, 64);
  redist::shard_options opts;
  opts.max_batch_bytes = in.ConsumeBool() ? in.ConsumeIntegralInRange<std::size_t>(0, 1 << 16)
                                          : in.ConsumeIntegral<std::size_t>();
  std::vector<redist::shard_spec> specs(in.ConsumeIntegralInRange<std::size_t>(0, 24));
  for (std::size_t i = 0; i < specs.size(); ++i) {
    auto& s = specs[i];
    s.name =
        in.ConsumeIntegralInRange(0, 15) != 0 ? "w" + std::to_string(i) : in.ConsumeRandomLengthString(2);
    s.dtype = static_cast<redist::dtype>(in.ConsumeIntegralInRange<int>(0, redist::dtype_count));
    s.shape.resize(in.ConsumeIntegralInRange<std::size_t>(0, 3));
    for (auto& e : s.shape) e = extent(in);
    if (in.ConsumeBool()) s.shard_dim = in.ConsumeIntegralInRange(-1, 3);
    if (in.ConsumeIntegralInRange(0, 3) == 0) s.owner = in.ConsumeIntegralInRange(-1, 64);
  }

  std::optional<redist::shard_plan> plan;
  if (!redist::fuzz::accepted([&] { plan = redist::plan_shards(specs, ranks, opts); })) return 0;
  check(ranks >= 1, "a plan has ranks");
  check(plan->owners.size() == specs.size(), "every tensor has an owner");
  std::vector<std::size_t> bytes(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto& s = specs[i];
    check(plan->owners[i] >= 0 && plan->owners[i] < ranks, "an owner is in range");
    check(!s.owner || *s.owner == plan->owners[i], "a given owner stands");
    check(redist::size_of(s.dtype) != 0, "an accepted tensor has a known dtype");
    check(redist::detail::shape_bytes(s.dtype, s.shape, bytes[i]), "an accepted tensor's bytes fit");
    if (s.shard_dim) {
      check(*s.shard_dim >= 0 && static_cast<std::size_t>(*s.shard_dim) < s.shape.size(),
            "the shard dim exists");
      check(s.shape[static_cast<std::size_t>(*s.shard_dim)] % ranks == 0, "the shards are equal");
    }
    for (std::size_t j = 0; j < i; ++j) check(specs[j].name != s.name, "names are unique");
  }
  const auto& starts = plan->batch_starts;
  if (specs.empty()) {
    check(plan->batches() == 0, "no tensors, no batches");
    return 0;
  }
  check(starts.front() == 0 && starts.back() == specs.size(), "the batches cover the specs");
  for (std::size_t b = 0; b < plan->batches(); ++b) {
    const std::size_t first = starts[b], last = starts[b + 1];
    check(first < last, "a batch holds a tensor");
    check(last - first == 1 || fits(specs, bytes, plan->owners, first, last, ranks, opts.max_batch_bytes),
          "a batch of several tensors keeps every rank within the budget");
    if (b + 1 < plan->batches())
      check(!fits(specs, bytes, plan->owners, first, last + 1, ranks, opts.max_batch_bytes),
            "a batch closes only when the next tensor does not fit");
  }
  return 0;
}
