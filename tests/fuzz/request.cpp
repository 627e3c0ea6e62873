// Fuzz target: the one-call form's requests as every rank decodes them from the metadata allgather: 1 to 8
// ranks' blobs cut from the input, each decoded (and re-encoded to the same bytes), then, when every rank
// sent a request, the metadata decoded and the plan derived with a fuzzed pattern: what is accepted must
// pass check_plan, what is refused must be a redist::error.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "redist/comm/agree.hpp"
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
  std::vector<std::string> problems, calls;
  bool all_requests = true;
  for (std::size_t r = 0; r < ranks; ++r) {
    redist::detail::request q;
    if (!redist::fuzz::accepted([&] { q = redist::detail::decode_request(blobs[r], r); })) return 0;
    if (q.problem.empty()) {
      const auto wanted = redist::detail::wanted_ids(q);
      check(redist::detail::encode_request(q.call, {}, q.metadata, wanted) == blobs[r],
            "a decoded request encodes to its bytes");
    } else if (blobs[r][0] == std::byte{1} && blobs[r].size() > 9 + q.call.size()) {
      check(redist::detail::encode_request(q.call, q.problem, {}, {}) == blobs[r],
            "a decoded problem encodes to its bytes");
    }
    all_requests = all_requests && q.problem.empty();
    problems.push_back(q.problem);
    calls.push_back(q.call);
    requests.push_back(q);
  }
  if (!all_requests) {
    check(!redist::detail::agreed_message("redist::redistribute", problems, calls).empty(),
          "a rank's problem gives a message");
    return 0;
  }
  redist::plan_cache::derived d;
  if (!redist::fuzz::accepted([&] { d = redist::detail::derive(requests, opts); })) return 0;
  std::vector<redist::id_list> wants;
  for (const auto& q : requests) wants.push_back(redist::detail::wanted_ids(q));
  const auto tracker = redist::storage_tracker::from_batches(d.metas);
  const auto report = redist::check_plan(d.p, tracker, wants, d.keys);
  check(report.ok(), report.problems.empty() ? "check_plan passes" : report.problems.front());
  return 0;
}
