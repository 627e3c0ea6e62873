// MPI tests of REDIST_DEBUG's output (detail/debug.hpp), captured through the test hook: at INFO rank 0 alone
// prints (dispatch: the root), at TRACE every rank its own lines, off nothing. redistribute's numbers (steps,
// wire bytes, hops, each step's bytes) are checked against estimate_cost of the plan planned here apart;
// seqpar's, shard_scatter's and dispatch's bytes against what the layout moves.
#include <doctest/doctest.h>
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <regex>
#include <span>
#include <string>
#include <vector>

#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/detail/debug.hpp"
#include "redist/dispatch.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/cost.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/redistribute.hpp"
#include "redist/seqpar.hpp"
#include "redist/shard.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;
using redist::detail::debug_level;
using batch = redist::sequence_batch<>;
using capture = redist::detail::debug_capture_for_testing;
using redist::test::all_ranks;

// Rank r holds ids 10r+1 and 10r+2: key "x" i32 of 1 + id % 4 tokens, key "y" f64 [3] of 2 tokens.
batch ring_batch(int r) {
  const std::vector<sample_id> ids{10 * static_cast<sample_id>(r) + 1, 10 * static_cast<sample_id>(r) + 2};
  redist::seqlen_table lx, ly;
  std::int64_t rows = 0;
  for (const sample_id id : ids) {
    const auto t = static_cast<std::int64_t>(1 + id % 4);
    const std::int64_t two = 2;
    lx.push_back(std::span(&t, 1));
    ly.push_back(std::span(&two, 1));
    rows += t;
  }
  std::vector<batch::field> fields;
  fields.push_back({"x", dtype::i32, {}, std::move(lx), host_tensor(dtype::i32, {rows})});
  fields.push_back({"y", dtype::f64, {3}, std::move(ly), host_tensor(dtype::f64, {4, 3})});
  return batch(ids, std::move(fields));
}

// The ids of the next rank, second first.
std::vector<sample_id> ring_wanted(int r, int n) {
  const auto next = static_cast<sample_id>((r + 1) % n);
  return {10 * next + 2, 10 * next + 1};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t end = text.find('\n', at);
    out.push_back(text.substr(at, end - at));
    at = end == std::string::npos ? text.size() : end + 1;
  }
  return out;
}

// Every line carries this rank's prefix.
bool all_prefixed(const std::vector<std::string>& lines, const redist::mpi_communicator& comm) {
  const std::string prefix =
      "redist[rank " + std::to_string(comm.rank()) + "/" + std::to_string(comm.size()) + "] ";
  for (const auto& l : lines)
    if (l.rfind(prefix, 0) != 0) return false;
  return !lines.empty();
}

// The planner and the cost model run here on every rank's batch, as the one-call form plans.
struct expected_plan {
  redist::storage_tracker tracker;
  redist::plan p;
  redist::plan_cost cost;
};
expected_plan plan_here(int n, redist::plan_pattern pattern) {
  std::vector<batch> all;
  std::vector<redist::id_list> wants;
  for (int r = 0; r < n; ++r) {
    all.push_back(ring_batch(r));
    wants.push_back(ring_wanted(r, n));
  }
  auto tracker = redist::storage_tracker::from_batches(all);
  const std::vector<std::string> keys{"x", "y"};
  redist::plan p = pattern == redist::plan_pattern::one_hop
                       ? redist::plan_all_to_all(tracker, wants, keys)
                       : redist::plan_gather_scatter(tracker, wants, keys);
  auto cost = redist::estimate_cost(p, tracker);
  return {std::move(tracker), std::move(p), std::move(cost)};
}

// Empty when the lines are redistribute's report of `e` for this rank: the call, the plan's figures, one line
// per step with its bytes, the end; at TRACE each step's peers.
std::string report_problem(const std::vector<std::string>& lines, const expected_plan& e, int rank,
                           bool trace) {
  const auto& c = e.cost;
  const auto me = static_cast<std::size_t>(rank);
  std::size_t at = 0;
  auto next = [&]() -> const std::string& {
    static const std::string none;
    return at < lines.size() ? lines[at++] : none;
  };
  if (next().find("] redist::redistribute (staging byte_staging") == std::string::npos)
    return "no header line";
  const std::regex plan_line(
      std::string(R"(\] plan: (\d+) steps? in (\d+) stages?, wire (\d+) B.*, hops (\d+), )") +
      R"(.*this rank sends (\d+) B.*, receives (\d+) B)");
  std::smatch m;
  const std::string& pl = next();
  if (!std::regex_search(pl, m, plan_line)) return "no plan line: " + pl;
  if (std::stoull(m[1]) != c.steps.size() || std::stoull(m[2]) != e.p.stages.size() ||
      std::stoull(m[3]) != c.wire_bytes || std::stoi(m[4]) != c.hops || std::stoull(m[5]) != c.sent[me] ||
      std::stoull(m[6]) != c.received[me])
    return "plan figures differ: " + pl;
  if (trace && rank == 0) {
    if (next().find("]   plan over ") == std::string::npos) return "no describe() table";
    while (at < lines.size() && lines[at].find("] plan") == std::string::npos &&
           lines[at].find("]   ") != std::string::npos)
      ++at;
  }
  const std::regex step_line(
      R"(\] step (\d+) \(stage (\d+)\) (\w+) \[[^\]]*\]: [0-9.]+ ms, sent (\d+) B.*, received (\d+) B)");
  for (std::size_t s = 0; s < c.steps.size(); ++s) {
    const std::string& sl = next();
    if (!std::regex_search(sl, m, step_line)) return "no line of step " + std::to_string(s) + ": " + sl;
    if (std::stoull(m[1]) != s || std::stoull(m[2]) != c.steps[s].stage || m[3] != c.steps[s].kind ||
        std::stoull(m[4]) != c.steps[s].sent_by(rank) || std::stoull(m[5]) != c.steps[s].received_by(rank))
      return "step figures differ: " + sl;
    if (trace != (sl.find("; to ") != std::string::npos)) return "peers at TRACE only: " + sl;
  }
  const std::string& done = next();
  if (done.find("] redist::redistribute done: ") == std::string::npos) return "no last line: " + done;
  if (done.find("sent " + std::to_string(c.sent[me]) + " B") == std::string::npos)
    return "total differs: " + done;
  return at == lines.size() ? "" : "extra lines: " + lines[at];
}

// f(comm) on the world and on the world numbered backwards (rank 0 of comm is not world rank 0).
template <class F>
void on_world_and_backwards(F f) {
  f(redist::mpi_communicator(MPI_COMM_WORLD));
  const redist::test::owned_comm reversed = redist::test::reversed_world();
  f(redist::mpi_communicator(reversed.get()));
}

}  // namespace

// Also run by CTest as mpi_debug_log.env_info, with REDIST_DEBUG=INFO in the environment and no hook: rank
// 0 prints its report on stderr, which that test's regular expressions read (tests/CMakeLists.txt).
TEST_CASE("REDIST_DEBUG from the environment: the level it names, read once, and the report on stderr") {
  const auto parsed = redist::detail::parse_debug_level(std::getenv("REDIST_DEBUG"));
  CHECK(redist::detail::current_debug_level() == parsed.value_or(debug_level::off));
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const batch got =
      redist::redistribute(comm, ring_batch(comm.rank()), ring_wanted(comm.rank(), comm.size()));
  CHECK(got.size() == 2);
}

TEST_CASE("REDIST_DEBUG: one-call redistribute prints its plan and steps, INFO on rank 0, TRACE everywhere") {
  on_world_and_backwards([](const redist::mpi_communicator& comm) {
    const int r = comm.rank(), n = comm.size();
    for (const auto pattern : {redist::plan_pattern::one_hop, redist::plan_pattern::gather_scatter}) {
      const expected_plan e = plan_here(n, pattern);
      redist::redistribute_options opts;
      opts.pattern = pattern;
      for (const auto level : {debug_level::info, debug_level::trace}) {
        capture cap(level);
        const batch got = redist::redistribute(comm, ring_batch(r), ring_wanted(r, n), opts);
        const std::string text = cap.take();
        const auto lines = lines_of(text);
        const bool prints = level == debug_level::trace || r == 0;
        const std::string problem = prints ? report_problem(lines, e, r, level == debug_level::trace)
                                           : (text.empty() ? "" : "rank prints at INFO: " + text);
        INFO("pattern " << static_cast<int>(pattern) << ", level " << static_cast<int>(level) << ": "
                        << problem << "\n"
                        << text);
        CHECK(problem.empty());
        CHECK((!prints || all_prefixed(lines, comm)));
        CHECK(got.size() == 2);
        CHECK(all_ranks(problem.empty(), comm.native()));
      }
      capture off(debug_level::off);
      (void)redist::redistribute(comm, ring_batch(r), ring_wanted(r, n), opts);
      CHECK(off.take().empty());
    }
  });
}

TEST_CASE("REDIST_DEBUG: the plan-based form reports the plan it is given") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int r = comm.rank(), n = comm.size();
  const expected_plan e = plan_here(n, redist::plan_pattern::gather_scatter);
  const batch local = ring_batch(r);
  const auto world = redist::gather_metadata(comm, local);
  redist::sample_store<host_tensor> store;
  store.borrow(local);
  capture cap(debug_level::info);
  redist::redistribute(comm, store, e.p, world.cat);
  const std::string text = cap.take();
  const std::string problem =
      r == 0 ? report_problem(lines_of(text), e, r, false) : (text.empty() ? "" : "rank prints: " + text);
  INFO(problem << "\n" << text);
  CHECK(problem.empty());
  CHECK(all_ranks(problem.empty()));
}

TEST_CASE("REDIST_DEBUG: seqpar prints one line per exchange with its layout and bytes") {
  on_world_and_backwards([](const redist::mpi_communicator& comm) {
    const int r = comm.rank(), n = comm.size();
    const host_tensor x(dtype::i32, {2 * n, 3});
    const std::string moved = std::to_string(24 * (n - 1)) + " B";
    const std::string layout = "redist::seqpar::all_to_all: x [" + std::to_string(2 * n) +
                               ", 3] -> out [2, " + std::to_string(3 * n) + "], block 24 B, sent from x, ";
    for (const auto level : {debug_level::off, debug_level::info, debug_level::trace}) {
      capture cap(level);
      (void)redist::seqpar::all_to_all(comm, x, 0, 1);
      const std::string text = cap.take();
      const auto lines = lines_of(text);
      const bool prints = level == debug_level::trace || (level == debug_level::info && r == 0);
      bool ok = lines.size() == (prints ? 1u : 0u);
      if (ok && prints) {
        ok = all_prefixed(lines, comm) && lines[0].find(layout) != std::string::npos &&
             lines[0].find("sent " + moved + ", received " + moved) != std::string::npos &&
             (level == debug_level::trace) == (lines[0].find("; to and from each of") != std::string::npos);
      }
      INFO("level " << static_cast<int>(level) << " printed:\n" << text);
      CHECK(ok);
      CHECK(all_ranks(ok, comm.native()));
    }
    capture cap(debug_level::info);
    const host_tensor h(dtype::f32, {3, 2 * n});  // seq 3, heads 2n
    (void)redist::seqpar::gather_seq_scatter_heads(comm, h, 0, 1);
    const auto lines = lines_of(cap.take());
    const bool ok =
        r != 0 ? lines.empty()
               : lines.size() == 1 && lines[0].find("gather_seq_scatter_heads: x [3, ") != std::string::npos;
    CHECK(all_ranks(ok, comm.native()));
  });
}

TEST_CASE("REDIST_DEBUG: shard_scatter prints one line with the bytes this rank moved") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int r = comm.rank(), n = comm.size();
  // Rank 0 loads both: a sharded f32 [4n, 2] (32 B to each rank) and a replicated f32 [3] (12 B); in the last
  // batch every rank also sends each other rank one success byte.
  const std::vector<redist::shard_spec> specs{{"w", dtype::f32, {4 * n, 2}, 0, 0},
                                              {"b", dtype::f32, {3}, {}, 0}};
  auto load = [&](std::size_t i) { return host_tensor(dtype::f32, specs[i].shape); };
  const auto peers = static_cast<std::uint64_t>(n - 1);
  const std::uint64_t sent = r == 0 ? peers * (32 + 12 + 1) : peers,
                      received = r == 0 ? peers : 32 + 12 + peers;
  for (const auto level : {debug_level::off, debug_level::info, debug_level::trace}) {
    capture cap(level);
    (void)redist::shard_scatter(comm, std::span<const redist::shard_spec>(specs), load);
    const std::string text = cap.take();
    const auto lines = lines_of(text);
    const bool prints = level == debug_level::trace || (level == debug_level::info && r == 0);
    bool ok = lines.size() == (prints ? 1u : 0u);
    if (ok && prints) {
      const std::string figures = "sent " + std::to_string(n == 1 ? 0 : sent) + " B, received " +
                                  std::to_string(n == 1 ? 0 : received) + " B";
      ok = all_prefixed(lines, comm) &&
           lines[0].find("redist::shard_scatter: 2 tensors (" + std::to_string(r == 0 ? 2 : 0) +
                         " loaded here) in 1 batches") != std::string::npos &&
           lines[0].find(figures) != std::string::npos &&
           (level == debug_level::info || n == 1 || lines[0].find("; peer ") != std::string::npos);
    }
    INFO("level " << static_cast<int>(level) << " printed:\n" << text);
    CHECK(ok);
    CHECK(all_ranks(ok));
  }
}

TEST_CASE("REDIST_DEBUG: dispatch prints one line, at INFO on the root") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int r = comm.rank(), n = comm.size();
  for (const int root : {0, n - 1}) {
    // Item i: one f32 tensor of i + 1 rows, 10 wide (40 (i + 1) bytes), sent on its own (pack_below 1) after
    // the receiver's 1 KiB first message.
    std::vector<redist::nested<host_tensor>> items;
    std::uint64_t sent = 0;
    if (r == root)
      for (int i = 0; i < n; ++i) {
        items.emplace_back(host_tensor(dtype::f32, {i + 1, 10}));
        if (i != root) sent += 1024 + 40 * static_cast<std::uint64_t>(i + 1);
      }
    for (const auto level : {debug_level::off, debug_level::info, debug_level::trace}) {
      capture cap(level);
      (void)redist::dispatch(comm, std::span<const redist::nested<host_tensor>>(items), root,
                             {.pack_below = 1});
      const std::string text = cap.take();
      const auto lines = lines_of(text);
      const bool prints = level == debug_level::trace || (level == debug_level::info && r == root);
      bool ok = lines.size() == (prints ? 1u : 0u);
      if (ok && prints) {
        const std::string want = r == root ? "redist::dispatch: root " + std::to_string(root) + ", " +
                                                 std::to_string(n) + " items to " + std::to_string(n - 1) +
                                                 " receivers, pack_below 1: "
                                           : "redist::dispatch: from root " + std::to_string(root) + ": ";
        const std::string figures = r == root ? "sent " + std::to_string(sent) + " B"
                                              : "received " + std::to_string(1024 + 40 * (r + 1)) + " B";
        ok = all_prefixed(lines, comm) && lines[0].find(want) != std::string::npos &&
             lines[0].find(figures) != std::string::npos &&
             (level == debug_level::info || r != root || n == 1 ||
              lines[0].find("; to ") != std::string::npos);
      }
      INFO("level " << static_cast<int>(level) << " printed:\n" << text);
      CHECK(ok);
      CHECK(all_ranks(ok));
    }
  }
}
