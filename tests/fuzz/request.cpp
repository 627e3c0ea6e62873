// Fuzz target: the one-call form's requests as every rank decodes them from the metadata allgather: 1 to 8
// ranks' blobs cut from the input, each decoded (and its wanted ids re-encoded and decoded again), then the
// metadata decoded and the plan derived with a fuzzed pattern: what is accepted must pass check_plan, what is
// refused must be a redist::error.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "redist/plan/check.hpp"
#include "redist/redistribute/one_call.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using redist::fuzz::check;
  FuzzedDataProvider in(data, size);
  const auto ranks = in.ConsumeIntegralInRange<std::size_t>(1, 8);
  redist::redistribute_options opts;
  opts.pattern = static_cast<redist::plan_pattern>(in.ConsumeIntegralInRange(0, 2));
  opts.ranks_per_node = in.ConsumeIntegralInRange(-1, 4);
  for (int k = in.ConsumeIntegralInRange(0, 3); k > 0 && in.ConsumeBool(); --k)
    opts.keys.push_back(in.ConsumeRandomLengthString(8));
  std::vector<std::vector<std::byte>> blobs(ranks);
  for (std::size_t r = 0; r < ranks; ++r) {
    const std::size_t n =
        r + 1 == ranks ? in.remaining_bytes() : in.ConsumeIntegralInRange<std::size_t>(0, 512);
    for (const auto b : in.ConsumeBytes<std::uint8_t>(n)) blobs[r].push_back(static_cast<std::byte>(b));
  }

  std::vector<redist::detail::request> requests;
  for (std::size_t r = 0; r < ranks; ++r) {
    redist::detail::request q;
    if (!redist::fuzz::accepted([&] { q = redist::detail::decode_request(blobs[r], r); })) return 0;
    // The runs of ids, read back with a bound as the one-call form bounds them by the ids the ranks hold:
    // what is read encodes to at most the input's bytes and decodes to the same again.
    redist::id_list wanted;
    if (redist::fuzz::accepted([&] { wanted = redist::detail::wanted_ids(q, r, 1 << 16); })) {
      const auto again = redist::detail::encode_request(q.metadata, wanted);
      check(again.size() <= blobs[r].size(), "a decoded request encodes to no more bytes");
      const auto q2 = redist::detail::decode_request(again, r);
      check(redist::detail::wanted_ids(q2, r, 1 << 16) == wanted &&
                std::equal(q2.metadata.begin(), q2.metadata.end(), q.metadata.begin(), q.metadata.end()),
            "a request's encoding decodes to it");
    }
    requests.push_back(q);
  }
  redist::plan_cache::derived d;
  if (!redist::fuzz::accepted([&] { d = redist::detail::derive(requests, opts); })) return 0;
  std::vector<redist::id_list> wants;
  std::size_t held = 0;
  for (const auto& m : d.metas) held += m.size();
  for (std::size_t r = 0; r < ranks; ++r) wants.push_back(redist::detail::wanted_ids(requests[r], r, held));
  const auto tracker = redist::storage_tracker::from_batches(d.metas);
  const auto report = redist::check_plan(d.p, tracker, wants, d.keys);
  check(report.ok(), report.problems.empty() ? "check_plan passes" : report.problems.front());
  return 0;
}
