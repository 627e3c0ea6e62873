// Fuzz target: the three planners on fuzzed trackers (owners, copies, sizes up to 2^64 - 1, declared keys),
// wanted lists (unknown and repeated ids too), key lists and options. Every plan a planner returns must pass
// check_plan; every refusal must be a redist::error.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/check.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace {

const std::string names[] = {"a", "b", "c", "tokens"};

std::string key(FuzzedDataProvider& in) {
  return in.ConsumeIntegralInRange(0, 15) != 0 ? names[in.ConsumeIntegralInRange(0, 3)]
                                               : in.ConsumeRandomLengthString(3);
}

redist::sample_id id(FuzzedDataProvider& in) {
  return in.ConsumeIntegralInRange(0, 15) != 0 ? in.ConsumeIntegralInRange<redist::sample_id>(0, 24)
                                               : in.ConsumeIntegral<redist::sample_id>();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using redist::fuzz::check;
  FuzzedDataProvider in(data, size);
  const int ranks = in.ConsumeIntegralInRange(1, 12);
  std::optional<redist::storage_tracker> tracker;
  const bool built = redist::fuzz::accepted([&] {
    redist::storage_tracker::builder b(ranks);
    for (int n = in.ConsumeIntegralInRange(0, 64); n > 0; --n) {
      const int rank = in.ConsumeIntegralInRange(-1, ranks);
      switch (in.ConsumeIntegralInRange(0, 3)) {
        case 0:
        case 1: {
          const auto bytes = in.ConsumeBool() ? in.ConsumeIntegralInRange<std::uint64_t>(0, 4096)
                                              : in.ConsumeIntegral<std::uint64_t>();
          b.own(rank, id(in), key(in), bytes);
          break;
        }
        case 2:
          b.hold(rank, id(in), key(in));
          break;
        default:
          b.declare(key(in));
      }
    }
    tracker = std::move(b).build();
  });
  if (!built) return 0;
  std::vector<redist::id_list> wants(static_cast<std::size_t>(ranks));
  for (auto& w : wants)
    for (int n = in.ConsumeIntegralInRange(0, 12); n > 0; --n) w.push_back(id(in));
  if (in.ConsumeIntegralInRange(0, 7) == 0) wants.resize(in.ConsumeIntegralInRange<std::size_t>(0, 13));
  std::vector<std::string> keys;
  for (int n = in.ConsumeIntegralInRange(0, 4); n > 0; --n) keys.push_back(key(in));
  redist::plan_options opts;
  opts.ranks_per_node = in.ConsumeIntegralInRange(-1, 5);
  if (in.ConsumeBool()) {
    opts.key_groups.resize(in.ConsumeIntegralInRange<std::size_t>(1, 3));
    for (const auto& k : keys)
      opts.key_groups[in.ConsumeIntegralInRange<std::size_t>(0, opts.key_groups.size() - 1)].push_back(k);
    if (in.ConsumeIntegralInRange(0, 7) == 0) opts.key_groups.front().push_back(key(in));
  }

  using planner = redist::plan (*)(const redist::storage_tracker&, std::span<const redist::id_list>,
                                   std::span<const std::string>, const redist::plan_options&);
  const planner planners[] = {&redist::plan_all_to_all, &redist::plan_gather_scatter,
                              &redist::plan_broadcast};
  for (const planner make : planners) {
    redist::plan p;
    if (!redist::fuzz::accepted([&] { p = make(*tracker, wants, keys, opts); })) continue;
    check(p.ranks == ranks, "a plan has the tracker's ranks");
    const auto report = redist::check_plan(p, *tracker, wants, keys);
    check(report.ok(), report.problems.empty() ? "check_plan passes" : report.problems.front());
  }
  return 0;
}
