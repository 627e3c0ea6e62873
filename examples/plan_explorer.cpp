// plan_explorer: plans the hand-off of samples from a producer topology to a consumer topology with the three
// planners and prints their costs side by side; --scale times the one-hop planner at 4,096 and 65,536 ranks.
// No MPI: planning is pure. Checks every plan it prints (exit 1 on a wrong plan, 2 on bad arguments).
//
//   plan_explorer [--producer data=4,tensor=2,pipe=2] [--consumer data=2,tensor=4,pipe=2] [--samples 4096]
//                 [--ranks-per-node 8] [--keys 2] [--seed 1] [--disjoint] [--holders head|all] [--describe]
//                 [--scale] [--svg FILE]
// --svg FILE writes the one-hop plan's rank x rank traffic as an SVG heatmap (redist/plan/picture.hpp).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/core/metadata_codec.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/core/topology.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/check.hpp"
#include "redist/plan/cost.hpp"
#include "redist/plan/describe.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/picture.hpp"
#include "redist/plan/request.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/redistribute/request_codec.hpp"

namespace {

constexpr const char* usage =
    "usage: plan_explorer [options]\n"
    "  --producer DIMS       producer topology, dims slowest first (default data=4,tensor=2,pipe=2)\n"
    "  --consumer DIMS       consumer topology (default data=2,tensor=4,pipe=2); both need a 'data' dim\n"
    "  --samples N           samples to hand over (default 4096)\n"
    "  --ranks-per-node R    ranks per node; rank r sits on node r / R (default 8)\n"
    "  --keys K              keys per sample (default 2): input_ids 8 B/token, hidden 32 B/token, more 4 "
    "B/token\n"
    "  --seed S              seed of the lognormal token counts (default 1)\n"
    "  --disjoint            consumer ranks follow producer ranks (default: both over the same ranks)\n"
    "  --holders head|all    who holds the producer's output: the DP head (tensor 0, last pipe stage) or\n"
    "                        every replica of its data-parallel group (default head)\n"
    "  --describe            also print each plan's describe() table\n"
    "  --scale               time the one-hop planner on 1,048,576 samples at 4,096 and 65,536 ranks\n"
    "  --svg FILE            write the one-hop plan's traffic matrix as an SVG heatmap to FILE\n"
    "  --help                this text\n";

struct options {
  std::string producer = "data=4,tensor=2,pipe=2";
  std::string consumer = "data=2,tensor=4,pipe=2";
  std::size_t samples = 4096;
  int ranks_per_node = 8;
  int keys = 2;
  std::uint64_t seed = 1;
  bool disjoint = false;
  bool all_holders = false;
  bool scale = false;
  bool describe = false;
  std::string svg;
};

struct bad_arguments {
  std::string what;
};

std::uint64_t parse_number(std::string_view flag, const std::string& text) {
  std::size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || text.front() == '-')
    throw bad_arguments{std::string(flag) + ": '" + text + "' is not a non-negative integer"};
  return v;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
      has_value = true;
    }
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) throw bad_arguments{arg + " needs a value"};
      return argv[++i];
    };
    auto small = [&](std::uint64_t v, std::uint64_t lo, std::uint64_t hi) {
      if (v < lo || v > hi)
        throw bad_arguments{arg + ": " + std::to_string(v) + " is out of range [" + std::to_string(lo) +
                            ", " + std::to_string(hi) + "]"};
      return v;
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    } else if (arg == "--producer") {
      o.producer = next();
    } else if (arg == "--consumer") {
      o.consumer = next();
    } else if (arg == "--samples") {
      o.samples = static_cast<std::size_t>(small(parse_number(arg, next()), 1, std::uint64_t{1} << 32));
    } else if (arg == "--ranks-per-node") {
      o.ranks_per_node = static_cast<int>(small(parse_number(arg, next()), 1, 1 << 20));
    } else if (arg == "--keys") {
      o.keys = static_cast<int>(small(parse_number(arg, next()), 1, 16));
    } else if (arg == "--seed") {
      o.seed = parse_number(arg, next());
    } else if (arg == "--disjoint" && !has_value) {
      o.disjoint = true;
    } else if (arg == "--holders") {
      const auto v = next();
      if (v != "head" && v != "all") throw bad_arguments{"--holders: '" + v + "' is neither head nor all"};
      o.all_holders = v == "all";
    } else if (arg == "--describe" && !has_value) {
      o.describe = true;
    } else if (arg == "--scale" && !has_value) {
      o.scale = true;
    } else if (arg == "--svg") {
      o.svg = next();
    } else {
      throw bad_arguments{"unknown argument '" + std::string(argv[i]) + "'"};
    }
  }
  return o;
}

// "data=4,tensor=2,pipe=2" -> a topology with those dims in that order.
redist::topology parse_topology(std::string_view flag, const std::string& text) {
  std::vector<std::pair<std::string, int>> dims;
  std::size_t at = 0;
  while (at <= text.size()) {
    const auto end = std::min(text.find(',', at), text.size());
    const std::string part = text.substr(at, end - at);
    const auto eq = part.find('=');
    if (eq == std::string::npos || eq == 0)
      throw bad_arguments{std::string(flag) + ": '" + part + "' is not name=extent"};
    const auto extent = parse_number(flag, part.substr(eq + 1));
    if (extent < 1 || extent > 1u << 30)
      throw bad_arguments{std::string(flag) + ": bad extent in '" + part + "'"};
    dims.emplace_back(part.substr(0, eq), static_cast<int>(extent));
    at = end + 1;
  }
  std::vector<redist::topology::dim_value> view;
  for (const auto& [name, extent] : dims) view.emplace_back(name, extent);
  redist::topology t{std::span<const redist::topology::dim_value>(view)};
  if (!t.has_dim("data")) throw bad_arguments{std::string(flag) + ": '" + text + "' has no 'data' dim"};
  return t;
}

std::string to_string(const redist::topology& t) {
  std::string out;
  for (std::size_t d = 0; d < t.ndims(); ++d)
    out += (d ? "x" : "") + t.dim_names()[d] + std::to_string(t.extents()[d]);
  return out;
}

// ---- the layout: who holds what, who wants what ----

struct layout {
  redist::storage_tracker tracker;
  std::vector<redist::id_list> wants;
  std::vector<std::string> keys;
  std::uint64_t must_move = 0;        // bytes of (consumer rank, wanted id, key) the rank does not hold yet
  std::vector<std::uint64_t> tokens;  // per sample
};

struct layout_spec {
  redist::topology producer, consumer;
  std::size_t samples = 0;
  int keys = 2;
  std::uint64_t seed = 1;
  bool disjoint = false;
  bool all_holders = false;
};

// The DP head of data group d: tensor 0 (and every other dim 0) on the last pipeline stage.
int dp_head(const redist::topology& t, int d) {
  std::vector<redist::topology::dim_value> filter;
  for (const auto& name : t.dim_names())
    filter.emplace_back(name, name == "data" ? d : name == "pipe" ? -1 : 0);
  return t.ranks_where(std::span<const redist::topology::dim_value>(filter)).front();
}

// Samples [block * n / parts, (block + 1) * n / parts).
std::pair<std::size_t, std::size_t> block(std::size_t n, int parts, int b) {
  const auto p = static_cast<std::size_t>(parts), u = static_cast<std::size_t>(b);
  return {u * n / p, (u + 1) * n / p};
}

layout make_layout(const layout_spec& s) {
  const int p_ranks = s.producer.size(), c_ranks = s.consumer.size();
  if (!s.disjoint && p_ranks != c_ranks)
    throw bad_arguments{"colocated topologies must have the same size: the producer has " +
                        std::to_string(p_ranks) + " ranks, the consumer " + std::to_string(c_ranks) +
                        " (or pass --disjoint)"};
  const int ranks = s.disjoint ? p_ranks + c_ranks : p_ranks;
  const int offset = s.disjoint ? p_ranks : 0;

  layout out{redist::storage_tracker::builder(1).build(), {}, {}, 0, {}};
  std::vector<std::uint64_t> row_bytes;
  for (int k = 0; k < s.keys; ++k) {
    out.keys.push_back(k == 0 ? "input_ids" : k == 1 ? "hidden" : "extra_" + std::to_string(k));
    row_bytes.push_back(k == 0 ? 8 : k == 1 ? 32 : 4);  // i64 x 1, bf16 x 16, f32 x 1 per token
  }
  // Lognormal tokens per sample with mean 1000: E = exp(mu + sigma^2 / 2).
  std::mt19937_64 rng(s.seed);
  const double sigma = 1.0;
  std::lognormal_distribution<double> length(std::log(1000.0) - sigma * sigma / 2, sigma);
  std::vector<std::uint64_t> tokens(s.samples);
  for (auto& t : tokens) t = static_cast<std::uint64_t>(std::max(1.0, std::round(length(rng))));

  redist::storage_tracker::builder b(ranks);
  const int pd = s.producer.extent("data");
  for (int d = 0; d < pd; ++d) {
    const int head = dp_head(s.producer, d);
    const auto group = s.all_holders ? s.producer.ranks_where({{"data", d}}) : std::vector<int>{};
    const auto [first, last] = block(s.samples, pd, d);
    for (std::size_t i = first; i < last; ++i)
      for (std::size_t k = 0; k < out.keys.size(); ++k) {
        b.own(head, i, out.keys[k], tokens[i] * row_bytes[k]);
        for (int r : group)
          if (r != head) b.hold(r, i, out.keys[k]);
      }
  }
  out.tracker = std::move(b).build();
  out.tokens = std::move(tokens);

  // Every rank of consumer data group d' wants block d' of the consumer's split, in id order.
  const int cd = s.consumer.extent("data");
  std::vector<redist::id_list> lists(static_cast<std::size_t>(cd));
  for (int d = 0; d < cd; ++d) {
    const auto [first, last] = block(s.samples, cd, d);
    for (std::size_t i = first; i < last; ++i) lists[static_cast<std::size_t>(d)].push_back(i);
  }
  out.wants.resize(static_cast<std::size_t>(ranks));
  const auto& t = out.tracker;
  std::vector<std::size_t> key_pos;
  for (const auto& k : out.keys) key_pos.push_back(*t.find_key(k));
  for (int c = 0; c < c_ranks; ++c) {
    const int rank = offset + c;
    const auto& list = lists[static_cast<std::size_t>(s.consumer.coord(c, "data"))];
    out.wants[static_cast<std::size_t>(rank)] = list;
    // Ids are 0..samples-1 and all present, so an id is its own tracker position.
    for (auto id : list)
      for (std::size_t k : key_pos)
        if (!t.holds(rank, id, k)) out.must_move += t.bytes(id, k);
  }
  return out;
}

// ---- measuring ----

double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double peak_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

std::string human(std::uint64_t b) {
  if (b < 1024) return std::to_string(b) + " B";
  const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(b) / 1024.0;
  std::size_t u = 0;
  for (; v >= 1024.0 && u + 1 < std::size(units); ++u) v /= 1024.0;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

using planner = std::function<redist::plan(const redist::storage_tracker&, std::span<const redist::id_list>,
                                           std::span<const std::string>, const redist::plan_options&)>;

struct pattern {
  const char* name;
  planner make;
};

const pattern patterns[] = {
    {"gather-scatter",
     [](const auto& t, auto w, auto k, const auto& o) { return redist::plan_gather_scatter(t, w, k, o); }},
    {"broadcast",
     [](const auto& t, auto w, auto k, const auto& o) { return redist::plan_broadcast(t, w, k, o); }},
    {"one-hop",
     [](const auto& t, auto w, auto k, const auto& o) { return redist::plan_all_to_all(t, w, k, o); }},
};

// The rank every gather and scatter of a gather-scatter plan runs through (-1 when there is no step).
int gather_scatter_root(const redist::plan& p) {
  for (const auto& stage : p.stages)
    for (const auto& s : stage)
      if (const auto* g = std::get_if<redist::gather_step>(&s))
        return g->root;
      else if (const auto* sc = std::get_if<redist::scatter_step>(&s))
        return sc->root;
  return -1;
}

// ---- normal mode ----

int explore(const options& o) {
  layout_spec spec{parse_topology("--producer", o.producer),
                   parse_topology("--consumer", o.consumer),
                   o.samples,
                   o.keys,
                   o.seed,
                   o.disjoint,
                   o.all_holders};
  const auto start = std::chrono::steady_clock::now();
  const layout l = make_layout(spec);
  std::printf(
      "producer %s -> consumer %s, %s, %d ranks (%d per node), %zu samples, %d keys, holders %s, seed %llu\n",
      to_string(spec.producer).c_str(), to_string(spec.consumer).c_str(),
      o.disjoint ? "disjoint" : "colocated", l.tracker.ranks(), o.ranks_per_node, o.samples, o.keys,
      o.all_holders ? "all" : "head", static_cast<unsigned long long>(o.seed));
  std::printf("layout built in %.1f ms; bytes that must move: %s\n\n", since(start) * 1e3,
              human(l.must_move).c_str());

  const redist::plan_options popts{.ranks_per_node = o.ranks_per_node, .key_groups = {}};
  std::printf("%-15s %7s %7s %7s %5s %13s %13s %9s %10s\n", "pattern", "steps", "stages", "calls", "hops",
              "wire", "bottleneck", "(rank)", "plan ms");
  bool ok = true;
  redist::plan_cost gs_cost, one_hop_cost;
  int gs_root = -1;
  std::string descriptions;
  for (const auto& pat : patterns) {
    const auto t0 = std::chrono::steady_clock::now();
    const redist::plan p = pat.make(l.tracker, l.wants, l.keys, popts);
    const double ms = since(t0) * 1e3;
    const auto c = redist::estimate_cost(p, l.tracker);
    std::printf("%-15s %7zu %7zu %7zu %5d %13s %13s %9d %10.2f\n", pat.name, p.step_count(), p.stages.size(),
                c.collective_calls, c.hops, human(c.wire_bytes).c_str(), human(c.bottleneck_bytes).c_str(),
                c.bottleneck_rank, ms);
    const auto check = redist::check_plan(p, l.tracker, l.wants, l.keys);
    const bool direct = std::string_view(pat.name) != "gather-scatter";
    if (!check.ok() || (direct && (check.redundant != 0 || check.unwanted != 0))) {
      ok = false;
      std::printf("  WRONG PLAN: %zu problems, %zu missing, %zu redundant, %zu unwanted\n",
                  check.problem_count, check.missing, check.redundant, check.unwanted);
      for (const auto& problem : check.problems) std::printf("    %s\n", problem.c_str());
    }
    if (o.describe) descriptions += std::string(pat.name) + ": " + redist::describe(p, l.tracker) + "\n";
    if (std::string_view(pat.name) == "gather-scatter") {
      gs_cost = c;
      gs_root = gather_scatter_root(p);
    } else if (std::string_view(pat.name) == "one-hop") {
      one_hop_cost = c;
      if (!o.svg.empty()) {
        const std::string title = "one-hop plan: " + to_string(spec.producer) + " -> " +
                                  to_string(spec.consumer) + (o.disjoint ? ", disjoint" : ", colocated");
        std::ofstream out(o.svg);
        out << redist::traffic_svg(p, l.tracker,
                                   {.title = title,
                                    .producer = &spec.producer,
                                    .consumer = &spec.consumer,
                                    .producer_first = 0,
                                    .consumer_first = o.disjoint ? spec.producer.size() : 0});
        if (!out.flush()) throw bad_arguments{"--svg: cannot write '" + o.svg + "'"};
      }
    }
  }

  std::printf("\n%s", descriptions.c_str());
  if (l.must_move > 0) {
    std::printf("one-hop wire bytes / bytes that must move = %.2f (target 1.00)\n",
                static_cast<double>(one_hop_cost.wire_bytes) / static_cast<double>(l.must_move));
  } else {
    std::printf("one-hop wire bytes / bytes that must move: nothing must move (one-hop wire bytes %s)\n",
                human(one_hop_cost.wire_bytes).c_str());
  }
  if (gs_root >= 0 && one_hop_cost.bottleneck_bytes > 0) {
    const auto u = static_cast<std::size_t>(gs_root);
    const auto root_bytes = gs_cost.sent[u] + gs_cost.received[u];
    std::printf(
        "gather-scatter root bytes / one-hop bottleneck bytes = %.2f (target >= 4): root %d moves %s, "
        "one-hop rank %d moves %s\n",
        static_cast<double>(root_bytes) / static_cast<double>(one_hop_cost.bottleneck_bytes), gs_root,
        human(root_bytes).c_str(), one_hop_cost.bottleneck_rank,
        human(one_hop_cost.bottleneck_bytes).c_str());
  } else {
    std::printf("gather-scatter root bytes / one-hop bottleneck bytes: no transfer, no ratio\n");
  }
  std::printf("%s\n", ok ? "every plan checked: ok" : "some plan is WRONG");
  return ok ? 0 : 1;
}

// ---- scale mode ----

struct scale_case {
  const char* producer;
  const char* consumer;
};

// Wall-clock and CPU seconds: on a loaded machine the CPU time is the figure to read.
struct stopwatch {
  std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
  std::clock_t cpu = std::clock();
  std::pair<double, double> elapsed() const {
    return {since(wall), static_cast<double>(std::clock() - cpu) / CLOCKS_PER_SEC};
  }
};

// What the one-call form's allgatherv brings every rank for this layout: each rank's request (its batch's
// metadata, the ids it wants), as one_call encodes it, with the layout's producers holding their samples
// (keys as make_layout sizes them: i64, bf16 x 16, f32 per token).
void one_call_metadata(const layout_spec& s, const layout& l) {
  const int ranks = s.producer.size();
  std::vector<redist::sequence_batch<redist::host_tensor>> batches(static_cast<std::size_t>(ranks));
  const int pd = s.producer.extent("data");
  for (int d = 0; d < pd; ++d) {
    const auto [first, last] = block(s.samples, pd, d);
    std::vector<redist::sample_id> ids;
    std::vector<redist::key_field<redist::host_tensor>> fields;
    for (std::size_t k = 0; k < l.keys.size(); ++k) {
      fields.push_back({l.keys[k],
                        k == 0   ? redist::dtype::i64
                        : k == 1 ? redist::dtype::bf16
                                 : redist::dtype::f32,
                        k == 1 ? std::vector<std::int64_t>{16} : std::vector<std::int64_t>{},
                        {},
                        {}});
    }
    for (std::size_t i = first; i < last; ++i) {
      ids.push_back(i);
      const auto len = static_cast<std::int64_t>(l.tokens[i]);
      for (auto& f : fields) f.seqlens.push_back(std::span(&len, 1));
    }
    batches[static_cast<std::size_t>(dp_head(s.producer, d))] = {std::move(ids), std::move(fields)};
  }
  std::uint64_t metadata = 0, total = 0;
  for (int r = 0; r < ranks; ++r) {
    const auto meta = redist::encode_metadata(batches[static_cast<std::size_t>(r)]);
    total += redist::detail::encode_request(meta, l.wants[static_cast<std::size_t>(r)]).size();
    metadata += meta.size();
  }
  std::printf("  %-22s every rank receives %s: metadata %s, wanted ids %s (%.1f B per sample)\n",
              "one-call metadata:", human(total).c_str(), human(metadata).c_str(),
              human(total - metadata).c_str(), static_cast<double>(total) / static_cast<double>(s.samples));
}

double n_log_n(std::size_t n) { return static_cast<double>(n) * std::log2(static_cast<double>(n)); }

int scale(const options& o) {
  const redist::plan_options popts{.ranks_per_node = o.ranks_per_node, .key_groups = {}};
  constexpr std::size_t million = std::size_t{1} << 20;
  auto spec_of = [&](const scale_case& sc, std::size_t samples) {
    return layout_spec{parse_topology("--producer", sc.producer),
                       parse_topology("--consumer", sc.consumer),
                       samples,
                       o.keys,
                       o.seed,
                       false,
                       false};
  };
  auto make = [&](const scale_case& sc, std::size_t samples) {
    const layout_spec spec = spec_of(sc, samples);
    std::printf("%s -> %s, colocated, %d ranks, %zu samples, %d keys, holders head\n", sc.producer,
                sc.consumer, spec.producer.size(), samples, o.keys);
    const stopwatch w;
    layout l = make_layout(spec);
    const auto [wall, cpu] = w.elapsed();
    std::printf("  %-22s %7.3f s wall %7.3f s cpu   peak RSS %6.0f MiB\n", "tracker + wants:", wall, cpu,
                peak_mib());
    return l;
  };
  // Returns the planner's CPU seconds.
  auto one_hop = [&](const layout& l, bool costed) {
    const stopwatch w;
    const auto p = redist::plan_all_to_all(l.tracker, l.wants, l.keys, popts);
    const auto [wall, cpu] = w.elapsed();
    std::printf(
        "  %-22s %7.3f s wall %7.3f s cpu   peak RSS %6.0f MiB   (%zu routes; target < 2 s, < 4096 MiB)\n",
        "plan_all_to_all:", wall, cpu, peak_mib(),
        std::get<redist::all_to_all_step>(p.stages.front().front()).routes.size());
    if (costed) {
      const stopwatch wc;
      const auto c = redist::estimate_cost(p, l.tracker);
      const auto [cwall, ccpu] = wc.elapsed();
      std::printf(
          "  %-22s %7.3f s wall %7.3f s cpu   wire %s, must move %s (ratio %.2f), bottleneck rank %d %s, "
          "hops %d\n",
          "estimate_cost:", cwall, ccpu, human(c.wire_bytes).c_str(), human(l.must_move).c_str(),
          static_cast<double>(c.wire_bytes) / static_cast<double>(l.must_move), c.bottleneck_rank,
          human(c.bottleneck_bytes).c_str(), c.hops);
    }
    return cpu;
  };

  // The least CPU time of a few more runs: one run on a shared machine is noisy, and growth is a ratio.
  auto best_of = [&](const layout& l, double first) {
    double best = first;
    for (int run = 0; run < 2; ++run) {
      const stopwatch w;
      const auto p = redist::plan_all_to_all(l.tracker, l.wants, l.keys, popts);
      best = std::min(best, w.elapsed().second);
    }
    return best;
  };
  // The reference planners on the same layout, with the cost of their plans.
  auto others = [&](const layout& l) {
    const std::pair<const char*, const char*> which[] = {{"gather-scatter", "plan_gather_scatter:"},
                                                         {"broadcast", "plan_broadcast:"}};
    for (const auto& [pattern_name, label] : which) {
      const std::string_view name = pattern_name;
      const auto& pat = *std::find_if(std::begin(patterns), std::end(patterns),
                                      [&](const pattern& x) { return std::string_view(x.name) == name; });
      const stopwatch w;
      const auto p = pat.make(l.tracker, l.wants, l.keys, popts);
      const auto [wall, cpu] = w.elapsed();
      const double rss = peak_mib();
      const stopwatch wc;
      const auto c = redist::estimate_cost(p, l.tracker);
      std::printf(
          "  %-22s %7.3f s wall %7.3f s cpu   peak RSS %6.0f MiB   (%zu steps; wire %s, bottleneck %s, hops "
          "%d; "
          "estimate_cost %.3f s cpu)\n",
          label, wall, cpu, rss, p.step_count(), human(c.wire_bytes).c_str(),
          human(c.bottleneck_bytes).c_str(), c.hops, wc.elapsed().second);
    }
  };

  std::printf(
      "scale mode: one core; peak RSS is the process's high-water mark so far (the one-hop planner at\n"
      "65,536 ranks runs first, so its figure is its own)\n");
  std::printf(
      "(check_plan is not run here: its simulator keeps a hash set per rank; the normal mode checks "
      "plans)\n\n");
  const scale_case big{"data=4096,tensor=4,pipe=4", "data=2048,tensor=8,pipe=4"};
  std::vector<std::pair<std::size_t, double>> growth;
  {
    const layout l = make(big, million);
    growth.emplace_back(million, best_of(l, one_hop(l, true)));
    others(l);
    one_call_metadata(spec_of(big, million), l);
  }
  for (std::size_t n : {million / 2, million / 4}) {
    const layout l = make(big, n);
    growth.emplace_back(n, best_of(l, one_hop(l, false)));
  }
  std::printf("\n");
  {
    const layout l = make({"data=256,tensor=4,pipe=4", "data=512,tensor=8,pipe=1"}, million);
    one_hop(l, true);
    others(l);
  }
  std::sort(growth.begin(), growth.end());
  std::printf(
      "\nplan_all_to_all growth at 65,536 ranks: best cpu time of 3 runs, and time / (n log2 n) "
      "normalized to the smallest n (<= 1: no faster than n log n):\n");
  for (const auto& [n, s] : growth)
    std::printf("  n = %8zu   %7.3f s   %.2f\n", n, s,
                (s / n_log_n(n)) / (growth.front().second / n_log_n(growth.front().first)));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const options o = parse(argc, argv);
    return o.scale ? scale(o) : explore(o);
  } catch (const bad_arguments& e) {
    std::fprintf(stderr, "plan_explorer: %s\n%s", e.what.c_str(), usage);
    return 2;
  } catch (const redist::error& e) {
    std::fprintf(stderr, "plan_explorer: %s\n", e.what());
    return 2;
  }
}
