// The randomized soak of redist::redistribute(): seeded layouts, each on a communicator of its own, through
// every planning pattern x every staging, each result checked byte for byte; a failure prints its repeat.
//
//   soak_redistribute --layouts N [--seed S] [--first I] [--combos C] [--max-failures F] [--progress P]
//                     [--trace] [--corrupt] [--checksums]
//
// Layout i is drawn from mix(S, i) alone, the same on every rank: `--first i --layouts 1` repeats it. Every
// call's outcome is agreed over MPI_COMM_WORLD, so every rank learns of any rank's failure and none waits
// for another that gave up; the exit status is non-zero on every rank when any call failed.
#include <mpi.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../mpi/random_layouts.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/redistribute.hpp"
#include "redist/redistribute/plan_cache.hpp"
#include "redist/staging/workspace.hpp"

namespace {

using redist::sample_id;
using redist::test::batch;
using redist::test::contents;
using redist::test::draw_int;
using redist::test::layout;
using redist::test::list_string;
using redist::test::mix;
using redist::test::rng;

// float32_staging's casts with variable counts: a staging of the caller's own, so that the steps' unpadded
// paths also run with a staging that casts and is not in place.
struct float32_unpadded : redist::float32_staging {
  static constexpr const char* label = "float32_unpadded";
  static constexpr bool padded = false;
};

// ---- what a layout runs: forms x stagings ----

enum class form {
  plan_all_to_all,
  plan_gather_scatter,
  plan_broadcast,
  call_one_hop,
  call_gather_scatter,
  call_broadcast,
  call_into_twice
};
constexpr std::size_t form_count = 7;
constexpr std::array<const char*, form_count> form_names = {
    "plan_all_to_all",      "plan_gather_scatter", "plan_broadcast", "call(one_hop)",
    "call(gather_scatter)", "call(broadcast)",     "call_into x2"};
constexpr std::size_t staging_count = 3;
constexpr std::array<const char*, staging_count> staging_names = {"byte", "float32", "float32_unpadded"};

redist::plan_pattern pattern_of(form f, redist::plan_pattern drawn) {
  switch (f) {
    case form::plan_all_to_all:
    case form::call_one_hop:
      return redist::plan_pattern::one_hop;
    case form::plan_gather_scatter:
    case form::call_gather_scatter:
      return redist::plan_pattern::gather_scatter;
    case form::plan_broadcast:
    case form::call_broadcast:
      return redist::plan_pattern::broadcast;
    case form::call_into_twice:
      break;
  }
  return drawn;
}

// ---- the communicator of a layout ----

enum class comm_kind { world, reversed, permuted, subset };
constexpr std::array<const char*, 4> comm_names = {"world", "reversed", "permuted", "subset"};

enum class budget_kind { ample, rounds, tiny };
constexpr std::array<const char*, 3> budget_names = {"ample", "rounds", "tiny"};

// Everything drawn for layout i: every rank draws the same from (seed, i).
struct soak_case {
  std::uint64_t seed = 0;
  comm_kind comm = comm_kind::world;
  std::vector<int> members;  // world ranks, in the order of their rank in the layout's communicator
  contents wide, narrow;     // byte staging's values, and float32's
  layout L;
  bool nothing = false;  // no sample anywhere
  budget_kind budget = budget_kind::ample;
  std::size_t max_staging_bytes = std::size_t{256} << 20;
  int ranks_per_node = 1;
  std::vector<std::string> keys;  // asked for; empty: every key
  redist::plan_pattern into_pattern = redist::plan_pattern::one_hop;
  std::vector<std::size_t> combos;  // form * staging_count + staging
  bool checksums = false;           // every call with redistribute_options::checksums (--checksums)

  std::string describe() const {
    std::ostringstream os;
    os << "communicator: " << comm_names[static_cast<std::size_t>(comm)] << ", world ranks "
       << list_string(members) << " as its ranks 0.." << members.size() - 1 << "\nkeys:";
    for (const auto& k : wide.keys) os << ' ' << k.name << list_string(k.trailing);
    os << "; max_len " << wide.max_len << "; asked for " << (keys.empty() ? "every key" : list_string(keys))
       << "\nmax_staging_bytes " << max_staging_bytes << " ("
       << budget_names[static_cast<std::size_t>(budget)] << "), ranks_per_node " << ranks_per_node
       << ", call_into's pattern " << redist::test::pattern_name(into_pattern)
       << (nothing ? ", no sample anywhere" : "") << '\n'
       << L.describe();
    return os.str();
  }
};

// The bytes, and the float32 elements, that every rank's batch holds together: what bounds a step's rounds.
std::pair<std::size_t, std::size_t> held_sizes(const contents& c, const layout& L) {
  std::size_t bytes = 0, elements = 0;
  for (std::size_t r = 0; r < L.held.size(); ++r)
    if (!L.bare[r])
      for (sample_id id : L.held[r])
        for (std::size_t k = 0; k < c.keys.size(); ++k) {
          const std::size_t b = redist::test::expected_bytes(c, id, k).size();
          bytes += b;
          elements += b / redist::size_of(c.keys[k].type);
        }
  return {bytes, elements};
}

soak_case draw_case(std::uint64_t seed, std::uint64_t index, int world_size, std::size_t combos_per_layout) {
  soak_case sc;
  sc.seed = mix(seed, index);
  rng g(mix(sc.seed, 1));

  // The communicator: the world, numbered backwards, permuted, or a random subset in a random order.
  sc.members.resize(static_cast<std::size_t>(world_size));
  std::iota(sc.members.begin(), sc.members.end(), 0);
  const std::uint64_t c = world_size == 1 ? 0 : g() % 20;
  if (c < 4) {
    sc.comm = comm_kind::world;
  } else if (c < 7) {
    sc.comm = comm_kind::reversed;
    std::reverse(sc.members.begin(), sc.members.end());
  } else if (c < 12) {
    sc.comm = comm_kind::permuted;
    std::shuffle(sc.members.begin(), sc.members.end(), g);
  } else {
    sc.comm = comm_kind::subset;
    std::shuffle(sc.members.begin(), sc.members.end(), g);
    sc.members.resize(static_cast<std::size_t>(draw_int(g, 1, world_size - 1)));
    if (g() % 2) std::sort(sc.members.begin(), sc.members.end());
  }
  const int n = static_cast<int>(sc.members.size());

  // Keys and sizes. A tiny budget comes with a small layout, which it splits into a round per few bytes.
  const std::uint64_t b = g() % 10;
  sc.budget = b < 3 ? budget_kind::ample : b < 6 ? budget_kind::rounds : budget_kind::tiny;
  redist::test::layout_limits lim{.max_block = draw_int(g, 1, 6), .max_len = draw_int(g, 0, 6)};
  if (g() % 8 == 0) lim.max_len = draw_int(g, 20, 300);  // longer sequences: larger pieces, many rounds
  sc.wide.keys = g() % 8 == 0 ? redist::test::default_keys() : redist::test::random_keys(g, 6);
  if (sc.budget == budget_kind::tiny) {
    lim = {.max_block = draw_int(g, 1, 2), .max_len = draw_int(g, 0, 2)};
    sc.wide.keys = redist::test::random_keys(g, 2);
  }
  sc.wide.seed = mix(sc.seed, 2);
  sc.wide.max_len = lim.max_len;
  sc.narrow = sc.wide;
  sc.narrow.narrow = true;
  sc.L = redist::test::random_layout(mix(sc.seed, 3), n, lim, sc.wide.keys.size());
  if (g() % 40 == 0) {  // no sample anywhere; some rank still declares the keys
    sc.nothing = true;
    for (auto& h : sc.L.held) h.clear();
    for (auto& w : sc.L.wanted) w.clear();
    sc.L.bare[static_cast<std::size_t>(draw_int(g, 0, n - 1))] = 0;
  }

  // The budget, the same on every rank. Rounds are bounded (by the held total / 64, at most 64 rounds per
  // step but padding): a tiny budget of a larger layout is raised to that.
  const auto [bytes, elements] = held_sizes(sc.wide, sc.L);
  const std::size_t wire = std::max(bytes, elements * sizeof(float));
  const std::size_t floor = (wire + 63) / 64;
  switch (sc.budget) {
    case budget_kind::ample:
      break;
    case budget_kind::rounds:
      sc.max_staging_bytes =
          std::max<std::size_t>(floor, wire / static_cast<std::size_t>(draw_int(g, 1, 16)));
      break;
    case budget_kind::tiny: {
      constexpr std::array<std::size_t, 9> tiny = {0, 1, 2, 3, 4, 5, 7, 8, 16};
      sc.max_staging_bytes = std::max(floor, tiny[g() % tiny.size()]);
    }
  }
  if (sc.budget != budget_kind::ample)  // named by what it came to
    sc.budget = sc.max_staging_bytes <= 16 ? budget_kind::tiny : budget_kind::rounds;
  sc.ranks_per_node = draw_int(g, 1, n + 1);

  // Keys asked for: every key by default, every key in an order of its own, or a subset.
  std::vector<std::string> names = redist::test::all_keys(sc.wide);
  switch (g() % 3) {
    case 0:
      break;
    case 1:
      std::shuffle(names.begin(), names.end(), g);
      sc.keys = names;
      break;
    default:
      std::shuffle(names.begin(), names.end(), g);
      names.resize(static_cast<std::size_t>(draw_int(g, 1, static_cast<int>(names.size()))));
      sc.keys = names;
  }
  sc.into_pattern = redist::test::all_patterns[g() % 3];

  // Every combination, or a random few of them.
  sc.combos.resize(form_count * staging_count);
  std::iota(sc.combos.begin(), sc.combos.end(), std::size_t{0});
  if (combos_per_layout < sc.combos.size()) {
    std::shuffle(sc.combos.begin(), sc.combos.end(), g);
    sc.combos.resize(combos_per_layout);
    std::sort(sc.combos.begin(), sc.combos.end());
  }
  return sc;
}

// ---- one call and its check on this rank ----

std::size_t tensor_bytes(const batch& b) {
  std::size_t n = 0;
  if (b.has_data())
    for (auto k : b.keys()) n += b.data(k).nbytes();
  return n;
}

// redistribute_into twice with a kept workspace and plan cache: the second call repeats the first's request,
// so it takes the plan from the cache and must refill the first's tensors in place (scribbled over in
// between, so that a byte it skips shows).
// --corrupt flips the first byte the last rank receives, to show that the soak reports what it finds.
template <class Staging>
std::string into_twice_problem(const redist::mpi_communicator& comm, const soak_case& sc, const contents& c,
                               const redist::redistribute_options& opts, bool corrupt,
                               std::size_t& delivered) {
  const int me = comm.rank();
  const auto& wanted = sc.L.wanted[static_cast<std::size_t>(me)];
  const auto keys = opts.keys.empty() ? redist::test::all_keys(c) : opts.keys;
  try {
    const batch local = redist::test::local_batch(c, sc.L, me);
    redist::workspace ws;
    redist::plan_cache cache;
    redist::redistribute_options o = opts;
    o.staging = &ws;
    o.plans = &cache;
    batch out;
    redist::redistribute_into<Staging>(comm, local, wanted, out, o);
    // Both calls are collective: a problem found after the first is reported after the second.
    std::string problem = redist::test::batch_problem(c, out, wanted, keys);
    std::vector<const void*> where;
    if (out.has_data())
      for (auto k : out.keys()) {
        auto& t = out.data(k);
        where.push_back(t.nbytes() ? t.data() : nullptr);
        if (t.nbytes()) std::memset(t.data(), 0xa5, t.nbytes());
      }
    redist::redistribute_into<Staging>(comm, local, wanted, out, o);
    delivered += tensor_bytes(out);
    if (corrupt && me == comm.size() - 1 && out.has_data())
      for (auto k : out.keys())
        if (auto& t = out.data(k); t.nbytes()) {
          *static_cast<unsigned char*>(t.data()) ^= 1u;
          break;
        }
    if (!problem.empty()) return "first call: " + problem;
    if (auto p = redist::test::batch_problem(c, out, wanted, keys); !p.empty()) return "second call: " + p;
    std::size_t i = 0;
    if (out.has_data())
      for (auto k : out.keys()) {
        const auto& t = out.data(k);
        if (i < where.size() && where[i] != (t.nbytes() ? t.data() : nullptr))
          return "second call: key '" + std::string(k) + "' was reallocated, not filled in place";
        ++i;
      }
    return redist::test::batch_problem(c, local, sc.L.held[static_cast<std::size_t>(me)],
                                       redist::test::batch_keys(c, sc.L, me));
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
}

template <class Staging>
std::string run_combo(const redist::mpi_communicator& comm, const soak_case& sc, form f, bool corrupt,
                      std::size_t& delivered) {
  const contents& c = Staging::lossless ? sc.wide : sc.narrow;
  redist::redistribute_options opts{.max_staging_bytes = sc.max_staging_bytes,
                                    .pattern = pattern_of(f, sc.into_pattern),
                                    .ranks_per_node = sc.ranks_per_node};
  opts.keys = sc.keys;
  opts.checksums = sc.checksums;
  switch (f) {
    case form::plan_all_to_all:
    case form::plan_gather_scatter:
    case form::plan_broadcast: {
      const auto keys = sc.keys.empty() ? redist::test::all_keys(c) : sc.keys;
      redist::redistribute_options plan_opts{.max_staging_bytes = sc.max_staging_bytes,
                                             .checksums = sc.checksums};
      return redist::test::plan_based_problem<Staging>(comm, sc.L, c, opts.pattern, sc.ranks_per_node, keys,
                                                       plan_opts, nullptr, &delivered);
    }
    case form::call_one_hop:
    case form::call_gather_scatter:
    case form::call_broadcast:
      return redist::test::one_call_problem<Staging>(comm, sc.L, c, opts, &delivered);
    case form::call_into_twice:
      return into_twice_problem<Staging>(comm, sc, c, opts, corrupt, delivered);
  }
  return "unknown form";
}

std::string run_combo(const redist::mpi_communicator& comm, const soak_case& sc, std::size_t combo,
                      bool corrupt, std::size_t& delivered) {
  const auto f = static_cast<form>(combo / staging_count);
  switch (combo % staging_count) {
    case 0:
      return run_combo<redist::byte_staging>(comm, sc, f, corrupt, delivered);
    case 1:
      return run_combo<redist::float32_staging>(comm, sc, f, corrupt, delivered);
    default:
      return run_combo<float32_unpadded>(comm, sc, f, corrupt, delivered);
  }
}

// ---- agreeing and reporting ----

bool all_ok(bool ok) {
  int local = ok ? 1 : 0, all = 0;
  MPI_Allreduce(&local, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  return all != 0;
}

// Every rank's text, gathered to world rank 0 in rank order: one writer, so ranks' lines never interleave.
std::string gather_text(const std::string& text, int rank, int size) {
  const int length =
      static_cast<int>(std::min<std::size_t>(text.size(), static_cast<std::size_t>(INT_MAX / size)));
  std::vector<int> lengths(rank == 0 ? static_cast<std::size_t>(size) : 0), offsets(lengths.size());
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string all;
  if (rank == 0) {
    for (std::size_t r = 1; r < lengths.size(); ++r) offsets[r] = offsets[r - 1] + lengths[r - 1];
    all.resize(static_cast<std::size_t>(offsets.back() + lengths.back()));
  }
  MPI_Gatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0,
              MPI_COMM_WORLD);
  return all;
}

struct settings {
  std::uint64_t seed = 1;
  std::uint64_t first = 0;
  std::uint64_t layouts = 100;
  std::size_t combos = form_count * staging_count;  // per layout
  std::uint64_t max_failures = 10;
  std::uint64_t progress = 0;  // print a line every this many layouts; 0: never
  bool trace = false;          // print each layout's index before running it
  bool corrupt = false;        // flip a received byte (call_into's), which the soak must report
  bool checksums = false;      // every call with end-to-end checksums, which must never report a change
};

bool parse(int argc, char** argv, settings& s, std::string& complaint) {
  auto number = [&](int& i, std::uint64_t& out) {
    if (i + 1 >= argc) return false;
    const std::string_view text = argv[++i];
    char* end = nullptr;
    out = std::strtoull(argv[i], &end, 10);
    return !text.empty() && end == argv[i] + text.size() && text[0] != '-';
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    std::uint64_t v = 0;
    bool ok = true;
    if (a == "--seed") {
      ok = number(i, s.seed);
    } else if (a == "--first") {
      ok = number(i, s.first);
    } else if (a == "--layouts") {
      ok = number(i, s.layouts);
    } else if (a == "--combos") {
      ok = number(i, v) && v >= 1;
      s.combos = static_cast<std::size_t>(std::min<std::uint64_t>(v, form_count * staging_count));
    } else if (a == "--max-failures") {
      ok = number(i, s.max_failures);
    } else if (a == "--progress") {
      ok = number(i, s.progress);
    } else if (a == "--trace") {
      s.trace = true;
    } else if (a == "--corrupt") {
      s.corrupt = true;
    } else if (a == "--checksums") {
      s.checksums = true;
    } else {
      complaint = "unknown argument '" + std::string(a) + "'";
      return false;
    }
    if (!ok) {
      complaint = "bad value for " + std::string(a);
      return false;
    }
  }
  return true;
}

constexpr const char* usage =
    "usage: soak_redistribute [--layouts N] [--seed S] [--first I] [--combos C] [--max-failures F] "
    "[--progress P] [--trace] [--corrupt] [--checksums]\n"
    "  runs layouts I .. I+N-1 of seed S, each through C of the 21 form x staging combinations (default "
    "all)\n";

// What the summary counts, on world rank 0.
struct tally {
  std::array<std::array<std::uint64_t, staging_count>, form_count> calls{};
  std::array<std::uint64_t, 4> comms{};
  std::array<std::uint64_t, 3> budgets{};
  std::array<std::uint64_t, redist::dtype_count> dtypes{};
  std::uint64_t nothing = 0, holds_nothing = 0, wants_nothing = 0, empty_sample = 0, zero_extent = 0;

  void count(const soak_case& sc) {
    for (auto combo : sc.combos) ++calls[combo / staging_count][combo % staging_count];
    ++comms[static_cast<std::size_t>(sc.comm)];
    ++budgets[static_cast<std::size_t>(sc.budget)];
    for (const auto& k : sc.wide.keys) ++dtypes[static_cast<std::size_t>(k.type)];
    nothing += sc.nothing;
    holds_nothing += std::any_of(sc.L.held.begin(), sc.L.held.end(), [](const auto& h) { return h.empty(); });
    wants_nothing +=
        std::any_of(sc.L.wanted.begin(), sc.L.wanted.end(), [](const auto& w) { return w.empty(); });
    zero_extent += std::any_of(sc.wide.keys.begin(), sc.wide.keys.end(),
                               [](const auto& k) { return redist::test::elements_per_row(k) == 0; });
    bool empty = false;
    for (const auto& h : sc.L.held)
      for (sample_id id : h)
        for (std::size_t k = 0; k < sc.wide.keys.size() && !empty; ++k) {
          const auto lens = redist::test::expected_seqlens(sc.wide, id, k);
          empty = std::accumulate(lens.begin(), lens.end(), std::int64_t{0}) == 0;
        }
    empty_sample += empty;
  }

  std::string text() const {
    std::ostringstream os;
    os << "form x staging (byte/float32/float32_unpadded):";
    for (std::size_t f = 0; f < form_count; ++f)
      os << ' ' << form_names[f] << ' ' << calls[f][0] << '/' << calls[f][1] << '/' << calls[f][2];
    os << "; communicators";
    for (std::size_t i = 0; i < comms.size(); ++i) os << ' ' << comm_names[i] << ' ' << comms[i];
    os << "; budgets";
    for (std::size_t i = 0; i < budgets.size(); ++i) os << ' ' << budget_names[i] << ' ' << budgets[i];
    os << "; keys by dtype";
    for (std::size_t i = 0; i < dtypes.size(); ++i)
      os << ' ' << redist::name(static_cast<redist::dtype>(i)) << ' ' << dtypes[i];
    os << "; layouts with a rank holding nothing " << holds_nothing << ", wanting nothing " << wants_nothing
       << ", a sample of no tokens " << empty_sample << ", rows of no elements " << zero_extent
       << ", no sample anywhere " << nothing;
    return os.str();
  }
};

int soak(int argc, char** argv, int rank, int size) {
  settings s;
  std::string complaint;
  if (!parse(argc, argv, s, complaint)) {
    if (rank == 0) std::cerr << "soak_redistribute: " << complaint << '\n' << usage;
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  tally t;
  std::uint64_t failures = 0, calls = 0, layouts_run = 0;
  unsigned long long delivered_here = 0;
  for (std::uint64_t i = s.first; i < s.first + s.layouts && failures < s.max_failures; ++i) {
    soak_case sc = draw_case(s.seed, i, size, s.combos);
    sc.checksums = s.checksums;
    if (rank == 0 && s.trace) std::cout << "soak: layout " << i << std::endl;
    ++layouts_run;
    if (rank == 0) t.count(sc);

    const auto pos = std::find(sc.members.begin(), sc.members.end(), rank);
    const bool member = pos != sc.members.end();
    MPI_Comm raw = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, member ? 0 : MPI_UNDEFINED, static_cast<int>(pos - sc.members.begin()),
                   &raw);
    {
      std::optional<redist::mpi_communicator> comm;
      if (member) comm.emplace(raw);
      for (auto combo : sc.combos) {
        std::size_t delivered = 0;
        const std::string problem =
            member ? run_combo(*comm, sc, combo, s.corrupt, delivered) : std::string();
        delivered_here += delivered;
        ++calls;
        if (all_ok(problem.empty())) continue;
        ++failures;
        const std::string here = problem.empty()
                                     ? std::string()
                                     : "  world rank " + std::to_string(rank) + " (rank " +
                                           std::to_string(pos - sc.members.begin()) + "): " + problem + "\n";
        const std::string all = gather_text(here, rank, size);
        if (rank == 0)
          std::cout << "soak: FAILED layout " << i << " of seed " << s.seed << ", "
                    << form_names[combo / staging_count] << " x " << staging_names[combo % staging_count]
                    << ", at " << size << " ranks\n"
                    << sc.describe() << '\n'
                    << all << "repeat: mpirun -np " << size << " --allow-run-as-root --oversubscribe "
                    << argv[0] << " --seed " << s.seed << " --first " << i << " --layouts 1"
                    << (s.corrupt ? " --corrupt" : "") << (s.checksums ? " --checksums" : "") << std::endl;
      }
    }
    if (raw != MPI_COMM_NULL) MPI_Comm_free(&raw);
    if (rank == 0 && s.progress && (i - s.first + 1) % s.progress == 0)
      std::cout << "soak: " << i - s.first + 1 << "/" << s.layouts << " layouts, " << failures << " failed"
                << std::endl;
  }
  unsigned long long delivered = 0;
  MPI_Reduce(&delivered_here, &delivered, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (rank == 0) {
    std::ostringstream os;
    os.setf(std::ios::fixed);
    os.precision(1);
    os << "soak: " << layouts_run << " layouts (" << s.first << ".." << s.first + layouts_run - 1
       << " of seed " << s.seed << ") at " << size << " ranks, " << calls << " calls, "
       << (failures ? std::to_string(failures) + " FAILED" : std::string("all byte-exact")) << "; "
       << t.text() << "; " << static_cast<double>(delivered) / 1e6 << " MB delivered; " << seconds << " s";
    std::cout << os.str() << std::endl;
  }
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int rc = 0;
  try {
    rc = soak(argc, argv, rank, size);
  } catch (const std::exception& e) {
    // Every call's check catches what the library throws: a throw here is the soak's own defect, and its
    // peers may be waiting in a collective, so it ends them all.
    std::cerr << "soak_redistribute: world rank " << rank << ": " << e.what() << std::endl;
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  MPI_Finalize();
  return rc;
}
