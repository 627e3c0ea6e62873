// Property tests of the three planners on thousands of seeded random layouts: check_plan, each planner's
// invariants, determinism under record order, errors. A failure names its seed; REDIST_TEST_SEED=<seed>
// REDIST_TEST_CASES=1 reruns it; REDIST_TEST_VERBOSE=1 prints what the generator covered.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/core/topology.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/check.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/request.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

// Under AddressSanitizer a crash ends the process without doctest's report: a death callback names the seed.
#if defined(__SANITIZE_ADDRESS__)
#define REDIST_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REDIST_TEST_ASAN 1
#endif
#endif
#ifdef REDIST_TEST_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace {

using redist::id_list;
using redist::sample_id;
using dim_value = redist::topology::dim_value;

// ---- seeds ----

constexpr std::uint64_t default_base_seed = 20240611;
// 3000 layouts take about 9 s in a -O0 ASan build; optimized builds run more in about a second.
#ifdef __OPTIMIZE__
constexpr int default_cases = 10000;
#else
constexpr int default_cases = 3000;
#endif
constexpr int coverage_cases = 3000;  // enough layouts to reach every corner the generator is written for
constexpr int max_reported = 20;      // failures printed in full; the rest are only counted

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  return std::strtoull(text, nullptr, 0);
}
// REDIST_TEST_SEED: the first seed (a failure's seed reruns it first); REDIST_TEST_CASES: how many seeds.
std::uint64_t base_seed() { return env_number("REDIST_TEST_SEED", default_base_seed); }
int case_count() { return static_cast<int>(env_number("REDIST_TEST_CASES", default_cases)); }
bool verbose() { return env_number("REDIST_TEST_VERBOSE", 0) != 0; }

std::size_t sz(int n) { return static_cast<std::size_t>(n); }

// mt19937_64 is specified bit for bit but <random>'s distributions are not: ranges and shuffles are drawn by
// hand so that a seed names the same layout under every standard library.
class random_source {
 public:
  explicit random_source(std::uint64_t seed) : engine_(seed) {}
  std::uint64_t bits() { return engine_(); }
  int between(int lo, int hi) {  // inclusive
    return lo + static_cast<int>(engine_() % static_cast<std::uint64_t>(hi - lo + 1));
  }
  bool chance(int percent) { return between(0, 99) < percent; }
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[engine_() % i]);
  }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[engine_() % v.size()];
  }

 private:
  std::mt19937_64 engine_;
};

template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

template <class T>
std::string list_text(const std::vector<T>& v) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  os << ']';
  return os.str();
}

// The case being run, named when the process dies in it (a signal or a sanitizer report), when doctest's
// failure messages cannot name it.
struct running_case {
  std::uint64_t seed = 0;
  const char* what = nullptr;
};
running_case running;

void report_death() {
  std::fflush(stdout);  // after what doctest has printed so far
  if (running.what)
    std::fprintf(stderr, "\nredist test: died in %s, seed %llu (REDIST_TEST_SEED=%llu REDIST_TEST_CASES=1)\n",
                 running.what, static_cast<unsigned long long>(running.seed),
                 static_cast<unsigned long long>(running.seed));
}

// doctest reports a crash (a signal) without INFO contexts: this listener names the seed then.
struct seed_on_crash : doctest::IReporter {
  explicit seed_on_crash(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException& e) override {
    if (e.is_crash) report_death();
  }
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
DOCTEST_REGISTER_LISTENER("redist_seed_on_crash", 1, seed_on_crash);

// Marks the start of a seeded case and names it to the sanitizers and to the crash listener.
void start_case(std::uint64_t seed, const char* what) {
#ifdef REDIST_TEST_ASAN
  static const bool registered = (__sanitizer_set_death_callback(&report_death), true);
  (void)registered;
#endif
  running = {seed, what};
}

// ---- layouts ----

// One builder call: own(rank, id, key, bytes) or hold(rank, id, key).
struct record {
  bool own = false;
  int rank = 0;
  sample_id id = 0;
  std::string key;
  std::uint64_t bytes = 0;
};

redist::storage_tracker build(int ranks, const std::vector<record>& records) {
  redist::storage_tracker::builder b(ranks);
  for (const auto& r : records) {
    if (r.own) {
      b.own(r.rank, r.id, r.key, r.bytes);
    } else {
      b.hold(r.rank, r.id, r.key);
    }
  }
  return std::move(b).build();
}

// A data/tensor/pipe topology laid over some of the ranks: communicator rank = topology rank * stride +
// offset.
struct grid {
  redist::topology topo;
  int stride = 1;
  int offset = 0;

  int data() const { return topo.has_dim("data") ? topo.extent("data") : 1; }
  // The ranks matching every (dim, value) of the filter; dims the topology lacks have extent 1 and are
  // dropped.
  std::vector<int> where(std::vector<dim_value> filter) const {
    std::erase_if(filter, [&](const dim_value& f) { return !topo.has_dim(f.first); });
    std::vector<int> out;
    for (int t : topo.ranks_where(std::span<const dim_value>(filter))) out.push_back(t * stride + offset);
    return out;
  }
  std::vector<int> dp_group(int d) const { return where({{"data", d}}); }
  // The rank that produces for data-parallel rank d in Megatron style: tensor 0 of the last pipeline stage.
  int head(int d) const { return where({{"data", d}, {"tensor", 0}, {"pipe", -1}}).front(); }

  std::string text() const {
    std::string out;
    for (std::size_t d = 0; d < topo.ndims(); ++d)
      out += cat(d ? "x" : "", topo.dim_names()[d], topo.extents()[d]);
    if (out.empty()) out = "(no dims)";
    return cat(out, " at rank*", stride, "+", offset);
  }
};

std::vector<int> divisors(int n) {
  std::vector<int> out;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) out.push_back(d);
  return out;
}

grid random_grid(random_source& g, int ranks) {
  const int size = g.chance(40) ? ranks : g.pick(divisors(ranks));
  int data = g.pick(divisors(size));
  if (data == 1)
    data = g.pick(divisors(size));  // fewer single-DP grids: their replicas often hold everything
  const int tensor = g.pick(divisors(size / data));
  const int pipe = size / data / tensor;
  std::vector<dim_value> dims;
  for (const dim_value& d : {dim_value{"data", data}, dim_value{"tensor", tensor}, dim_value{"pipe", pipe}})
    if (d.second > 1 || g.chance(50)) dims.push_back(d);
  g.shuffle(dims);
  grid out{redist::topology(std::span<const dim_value>(dims)), 1, 0};
  const int copies = ranks / size;
  if (g.chance(50)) {
    out.offset = size * g.between(0, copies - 1);  // a contiguous block
  } else {
    out.stride = copies;  // spread over the ranks
    out.offset = g.between(0, copies - 1);
  }
  return out;
}

// What a layout exercised, summed over the run, so the test can show that its generator reaches every corner.
struct coverage {
  std::map<std::string, int> counts;
  void operator()(const std::string& what, bool happened = true) {
    if (happened) ++counts[what];
  }
};

struct layout {
  int ranks = 1;
  std::vector<record> records;  // in generation order
  std::vector<id_list> wants;
  std::vector<std::string> keys;  // requested, in random order
  redist::plan_options options;
  std::vector<std::string> tracker_keys;                  // requested keys, maybe one more
  std::vector<sample_id> ids;                             // every id with at least one key
  std::vector<std::pair<sample_id, std::string>> absent;  // (id, tracker key) that nobody owns
  std::string text;                                       // a summary for failure messages
};

layout generate(std::uint64_t seed, coverage& cov) {
  random_source g(seed);
  layout L;
  // Ranks and samples lean small (half the layouts have at most 8 ranks, half at most 16 samples): small
  // layouts run faster and a failure in one is easier to read.
  L.ranks = g.chance(4) ? 1 : g.between(2, g.chance(50) ? 16 : 8);
  L.options.ranks_per_node = g.between(1, 4);
  cov("1 rank", L.ranks == 1);
  cov("16 ranks", L.ranks == 16);

  std::vector<std::string> pool = {"tokens", "logprobs", "values", "mask", "rewards"};
  g.shuffle(pool);
  // Sample ids: small ones and ones far above 2^24, distinct, in no particular order. A tracker without
  // samples knows no key, so the only valid request for it names no key.
  const int n = g.chance(5) ? 0 : g.between(1, g.chance(50) ? 60 : 16);
  const int nkeys = n == 0 ? 0 : g.between(1, 3);
  L.keys.assign(pool.begin(), pool.begin() + nkeys);
  L.tracker_keys = L.keys;
  if (n > 0 && g.chance(30)) L.tracker_keys.push_back(pool[sz(nkeys)]);
  cov(cat(nkeys, " keys"));
  cov("unrequested key in the tracker", L.tracker_keys.size() > L.keys.size());
  cov("0 samples", n == 0);
  std::vector<sample_id> samples;
  std::set<sample_id> seen;
  while (samples.size() < sz(n)) {
    const sample_id id = g.chance(50) ? static_cast<sample_id>(g.between(0, 200)) : g.bits();
    if (seen.insert(id).second) samples.push_back(id);
  }

  // Producer: each sample comes from one data-parallel rank; per key, its owner is the DP head or another
  // member; either only the owner holds it or every replica of the DP group does.
  const grid producer = random_grid(g, L.ranks);
  const bool replicas_hold = g.chance(40);
  cov("producer replicas hold", replicas_hold);
  std::vector<int> owner_member(L.tracker_keys.size());  // -1: the head
  for (auto& m : owner_member) m = g.chance(50) ? -1 : g.between(0, 1 << 20);
  std::vector<int> dp_of(sz(n));
  for (auto& d : dp_of) d = g.between(0, producer.data() - 1);
  std::vector<std::vector<int>> dp_members(sz(producer.data()));
  std::vector<int> dp_head(sz(producer.data()));
  for (int d = 0; d < producer.data(); ++d) {
    dp_members[sz(d)] = producer.dp_group(d);
    dp_head[sz(d)] = producer.head(d);
  }

  // Consumers: replicas of one DP group want the same list; ranks outside the consumer grid want nothing.
  std::vector<id_list> wants(sz(L.ranks));
  std::string consumer_text;
  if (g.chance(10)) {
    consumer_text = "independent ranks";
    for (auto& w : wants) {
      if (g.chance(30)) continue;
      const int p = g.between(0, 100);
      for (auto id : samples)
        if (g.chance(p)) w.push_back(id);
      g.shuffle(w);
    }
    cov("consumers: independent ranks");
  } else {
    const grid consumer = g.chance(30) ? producer : random_grid(g, L.ranks);
    std::vector<id_list> lists(sz(consumer.data()));
    if (g.chance(60)) {  // a partition of the batch, some samples wanted by nobody
      const int skip = g.pick(std::vector<int>{0, 0, 10, 50});
      for (auto id : samples)
        if (!g.chance(skip)) lists[sz(g.between(0, consumer.data() - 1))].push_back(id);
      consumer_text = cat("partition (skip ", skip, "%)");
    } else {  // overlapping lists
      for (auto& l : lists) {
        const int p = g.between(0, 100);
        for (auto id : samples)
          if (g.chance(p)) l.push_back(id);
      }
      consumer_text = "overlapping";
    }
    const bool first_stage_only = g.chance(10);
    for (int d = 0; d < consumer.data(); ++d) {
      auto& l = lists[sz(d)];
      if (g.chance(90)) g.shuffle(l);  // else in sample order, which is not sorted either
      const auto members =
          first_stage_only ? consumer.where({{"data", d}, {"pipe", 0}}) : consumer.dp_group(d);
      for (int r : members) wants[sz(r)] = l;
    }
    consumer_text = cat(consumer.text(), ", ", consumer_text, first_stage_only ? ", pipe 0 only" : "");
    cov("consumer grid is the producer's", consumer.topo == producer.topo &&
                                               consumer.stride == producer.stride &&
                                               consumer.offset == producer.offset);
    cov("consumer grid on a subset", consumer.topo.size() < L.ranks);
    cov("consumers: replicas", consumer.topo.size() > consumer.data() && n > 0);
  }
  std::set<sample_id> wanted;
  for (const auto& w : wants) wanted.insert(w.begin(), w.end());
  cov("empty ranks", std::any_of(wants.begin(), wants.end(), [](const id_list& w) { return w.empty(); }));

  // Holdings. Requested keys exist for every wanted sample; unwanted samples may lack some, and the extra
  // key is on some samples only.
  const int extra = g.pick(std::vector<int>{0, 0, 5, 20});
  const int zero_bytes = g.pick(std::vector<int>{0, 15, 100});
  bool zero_entries = false, extra_holders = false;
  for (std::size_t s = 0; s < samples.size(); ++s) {
    const sample_id id = samples[s];
    const auto& members = dp_members[sz(dp_of[s])];
    bool any = false;
    for (std::size_t k = 0; k < L.tracker_keys.size(); ++k) {
      const std::string& key = L.tracker_keys[k];
      const bool requested = k < L.keys.size();
      // The first sample has every requested key, so that the tracker knows them all.
      if (requested ? (s > 0 && !wanted.count(id) && g.chance(10)) : g.chance(40)) {
        L.absent.emplace_back(id, key);
        continue;
      }
      any = true;
      const int owner =
          owner_member[k] < 0 ? dp_head[sz(dp_of[s])] : members[sz(owner_member[k]) % members.size()];
      const std::uint64_t bytes = g.chance(zero_bytes) ? 0 : static_cast<std::uint64_t>(g.between(1, 5000));
      zero_entries |= bytes == 0;
      L.records.push_back({true, owner, id, key, bytes});
      if (g.chance(3)) L.records.push_back({true, owner, id, key, bytes});  // the same record twice
      if (replicas_hold)
        for (int m : members)
          if (m != owner || g.chance(10)) L.records.push_back({false, m, id, key, 0});
      if (g.chance(extra)) {
        L.records.push_back({false, g.between(0, L.ranks - 1), id, key, 0});
        extra_holders = true;
      }
    }
    if (any) L.ids.push_back(id);
  }
  cov("0-byte entries", zero_entries);
  cov("extra holders", extra_holders);
  cov("requested key absent on an unwanted sample",
      std::any_of(L.absent.begin(), L.absent.end(), [&](const auto& a) {
        return std::find(L.keys.begin(), L.keys.end(), a.second) != L.keys.end();
      }));

  // Ids already present on consumers, for some or all of the keys.
  const int present = g.pick(std::vector<int>{0, 0, 0, 5, 20, 60, 100});
  const int present_key = g.chance(50) ? 100 : 60;
  bool already_present = false;
  for (int r = 0; r < L.ranks; ++r)
    for (auto id : wants[sz(r)])
      if (g.chance(present))
        for (const auto& key : L.keys)
          if (g.chance(present_key)) {
            L.records.push_back({false, r, id, key, 0});
            already_present = true;
          }
  cov("ids already present on a consumer", already_present);

  // Ranks past wants.size() want nothing.
  if (g.chance(25)) {
    std::size_t last = wants.size();
    while (last > 0 && wants[last - 1].empty()) --last;
    wants.resize(sz(g.between(static_cast<int>(last), L.ranks)));
    cov("wants shorter than the ranks", wants.size() < sz(L.ranks));
  }
  L.wants = std::move(wants);

  const bool nothing_wanted = g.chance(5);
  if (nothing_wanted) {
    for (auto& w : L.wants) w.clear();
    cov("nothing wanted");
  }

  // Key groups: occasionally a random partition of the requested keys, rarely with an empty group.
  if (nkeys > 0 && g.chance(25)) {
    std::vector<std::string> keys = L.keys;
    g.shuffle(keys);
    std::vector<std::vector<std::string>> groups(sz(g.between(1, nkeys)));
    for (auto& k : keys) groups[sz(g.between(0, static_cast<int>(groups.size()) - 1))].push_back(k);
    const bool keep_empty = g.chance(20);
    if (!keep_empty) std::erase_if(groups, [](const auto& x) { return x.empty(); });
    if (keep_empty && g.chance(50)) groups.emplace_back();
    L.options.key_groups = std::move(groups);
    cov("key groups");
    cov("an empty key group", std::any_of(L.options.key_groups.begin(), L.options.key_groups.end(),
                                          [](auto& x) { return x.empty(); }));
  }

  std::string groups_text;
  for (const auto& gr : L.options.key_groups) groups_text += list_text(gr);
  L.text = cat("ranks ", L.ranks, ", ranks_per_node ", L.options.ranks_per_node, ", producer ",
               producer.text(), replicas_hold ? " (replicas hold)" : " (owners hold)", ", consumers ",
               consumer_text, ", ", n, " samples, keys ", list_text(L.keys), ", key_groups ",
               groups_text.empty() ? "-" : groups_text, ", present ", present, "%, extra holders ", extra,
               "%, wants.size() ", L.wants.size(), nothing_wanted ? " (all empty)" : "");
  return L;
}

// ---- planners and their invariants ----

using planner_fn = redist::plan (*)(const redist::storage_tracker&, std::span<const id_list>,
                                    std::span<const std::string>, const redist::plan_options&);
enum class kind { all_to_all, gather_scatter, broadcast };
struct planner {
  const char* name;
  kind which;
  planner_fn fn;
};
const planner planners[] = {{"plan_all_to_all", kind::all_to_all, &redist::plan_all_to_all},
                            {"plan_gather_scatter", kind::gather_scatter, &redist::plan_gather_scatter},
                            {"plan_broadcast", kind::broadcast, &redist::plan_broadcast}};

redist::plan run(const planner& p, const redist::storage_tracker& t, const layout& L) {
  return p.fn(t, L.wants, L.keys, L.options);
}

// Every requested key's key group (index into options.key_groups; 0 without groups).
std::map<std::string, std::size_t> group_of(const layout& L) {
  std::map<std::string, std::size_t> out;
  for (std::size_t g = 0; g < L.options.key_groups.size(); ++g)
    for (const auto& k : L.options.key_groups[g]) out[k] = g;
  if (L.options.key_groups.empty())
    for (const auto& k : L.keys) out[k] = 0;
  return out;
}

// How many key groups have keys: the most stages plan_all_to_all may make.
std::size_t nonempty_groups(const layout& L) {
  if (L.options.key_groups.empty()) return L.keys.empty() ? 0 : 1;
  return static_cast<std::size_t>(std::count_if(L.options.key_groups.begin(), L.options.key_groups.end(),
                                                [](const auto& g) { return !g.empty(); }));
}

bool is_subsequence(const id_list& part, const id_list& whole) {
  std::size_t i = 0;
  for (std::size_t j = 0; j < whole.size() && i < part.size(); ++j)
    if (whole[j] == part[i]) ++i;
  return i == part.size();
}

class checker {
 public:
  checker(const layout& L, const redist::storage_tracker& t) : L_(L), t_(t), group_(group_of(L)) {}

  std::vector<std::string> check(const planner& p, const redist::plan& plan, coverage& cov) {
    problems_.clear();
    if (plan.ranks != L_.ranks) note("plan.ranks is ", plan.ranks);
    const auto report = redist::check_plan(plan, t_, L_.wants, L_.keys);
    if (!report.ok()) {
      std::string text =
          cat("check_plan: ", report.problem_count, " problems (missing ", report.missing, ")");
      for (const auto& s : report.problems) text += "\n      " + s;
      note(text);
    }
    if (p.which != kind::gather_scatter && (report.redundant != 0 || report.unwanted != 0))
      note("check_plan: ", report.redundant, " redundant and ", report.unwanted, " unwanted deliveries of ",
           report.deliveries);
    cov(cat(p.name, ": deliveries"), report.deliveries > 0);
    cov(cat(p.name, ": empty plan"), plan.stages.empty());
    for (std::size_t s = 0; s < plan.stages.size(); ++s) {
      if (plan.stages[s].empty()) note("stage ", s, " is empty");
      for (const auto& st : plan.stages[s]) std::visit([&](const auto& x) { step_keys(s, x.keys); }, st);
    }
    switch (p.which) {
      case kind::all_to_all:
        all_to_all(plan, cov);
        break;
      case kind::gather_scatter:
        gather_scatter(plan, cov);
        break;
      case kind::broadcast:
        broadcast(plan, cov);
        break;
    }
    return problems_;
  }

 private:
  template <class... Parts>
  void note(const Parts&... parts) {
    problems_.push_back(cat(parts...));
  }

  // A step names requested keys, each once, all of one key group.
  void step_keys(std::size_t s, const std::vector<std::string>& keys) {
    if (keys.empty()) note("stage ", s, ": a step with no keys");
    std::set<std::size_t> groups;
    for (const auto& k : keys) {
      const auto at = group_.find(k);
      if (at == group_.end()) {
        note("stage ", s, ": a step names key '", k, "', which is not requested");
      } else {
        groups.insert(at->second);
      }
    }
    if (std::set<std::string>(keys.begin(), keys.end()).size() != keys.size())
      note("stage ", s, ": a step names a key twice: ", list_text(keys));
    if (groups.size() > 1) note("stage ", s, ": a step mixes key groups: ", list_text(keys));
  }

  const id_list* wants_of(int r) const { return sz(r) < L_.wants.size() ? &L_.wants[sz(r)] : nullptr; }

  void all_to_all(const redist::plan& plan, coverage& cov) {
    if (plan.stages.size() > nonempty_groups(L_))
      note(plan.stages.size(), " stages for ", nonempty_groups(L_), " non-empty key groups");
    std::set<std::size_t> groups_seen;
    const int rpn = L_.options.ranks_per_node;
    for (std::size_t s = 0; s < plan.stages.size(); ++s) {
      if (plan.stages[s].size() != 1) note("stage ", s, " has ", plan.stages[s].size(), " steps");
      for (const auto& st : plan.stages[s]) {
        const auto* a = std::get_if<redist::all_to_all_step>(&st);
        if (!a) {
          note("stage ", s, ": not an all_to_all_step");
          continue;
        }
        if (!a->keys.empty()) {
          const auto at = group_.find(a->keys.front());
          if (at != group_.end()) {
            if (!groups_seen.insert(at->second).second) note("stage ", s, ": a second stage for a key group");
            const auto members = std::count_if(group_.begin(), group_.end(),
                                               [&](const auto& kg) { return kg.second == at->second; });
            if (static_cast<std::size_t>(members) != a->keys.size())
              note("stage ", s, ": keys ", list_text(a->keys), " are not a whole key group");
          }
        }
        std::vector<int> used(a->payloads.size(), 0);
        std::set<std::tuple<int, std::uint32_t, id_list>> distinct;
        for (std::size_t q = 0; q < a->payloads.size(); ++q) {
          const auto& pl = a->payloads[q];
          if (pl.ids.empty()) note("stage ", s, ": payload ", q, " is empty");
          if (pl.key >= a->keys.size()) note("stage ", s, ": payload ", q, " has key ", pl.key);
          if (!distinct.insert({pl.src, pl.key, pl.ids}).second)
            note("stage ", s, ": payload ", q, " repeats (src ", pl.src, ", key ", pl.key, ", ids ",
                 list_text(pl.ids), ")");
        }
        for (std::size_t n = 0; n < a->routes.size(); ++n) {
          const auto& r = a->routes[n];
          if (r.payload >= a->payloads.size()) {
            note("stage ", s, ": route ", n, " names payload ", r.payload);
            continue;
          }
          ++used[r.payload];
          const auto& pl = a->payloads[r.payload];
          if (pl.src != r.src)
            note("stage ", s, ": route ", n, " from ", r.src, " uses a payload of ", pl.src);
          if (r.src == r.dst) note("stage ", s, ": route ", n, " from rank ", r.src, " to itself");
          if (n > 0) {
            const auto& p = a->routes[n - 1];
            const auto pk = p.payload < a->payloads.size() ? a->payloads[p.payload].key : 0;
            if (std::tuple(p.src, p.dst, pk) >= std::tuple(r.src, r.dst, pl.key))
              note("stage ", s, ": routes ", n - 1, " and ", n,
                   " are not in strictly ascending (src, dst, key) order");
          }
          const id_list* w = wants_of(r.dst);
          if (!w || !is_subsequence(pl.ids, *w)) {
            note("stage ", s, ": route ", n, " to rank ", r.dst, " carries ", list_text(pl.ids),
                 ", not in the order of its wanted list ", w ? list_text(*w) : "(none)");
          }
          // A holder on the destination's node is preferred to any other.
          if (pl.key < a->keys.size() && r.src >= 0 && r.dst >= 0) {
            const auto key = t_.find_key(a->keys[pl.key]);
            for (sample_id id : pl.ids) {
              const auto i = t_.find_id(id);
              if (!key || !i) continue;
              const auto h = t_.holders(*i, *key);
              const bool local_exists =
                  std::any_of(h.begin(), h.end(), [&](int x) { return x / rpn == r.dst / rpn; });
              if (local_exists && r.src / rpn != r.dst / rpn)
                note("stage ", s, ": route ", n, " brings id ", id, " to rank ", r.dst, " from rank ", r.src,
                     " on another node, though a holder shares its node");
            }
          }
        }
        for (std::size_t q = 0; q < used.size(); ++q) {
          if (used[q] == 0) note("stage ", s, ": payload ", q, " is unused");
          cov("plan_all_to_all: a payload shared by several routes", used[q] > 1);
        }
      }
    }
    cov("plan_all_to_all: several stages", plan.stages.size() > 1);
  }

  void gather_scatter(const redist::plan& plan, coverage& cov) {
    // The reference's rules: scatters go to every consumer with its ids ascending; a key is scattered once
    // when some consumer lacks some of it, else not at all; it is gathered (once, to its lowest owner) only
    // when scattered and the root lacks some wanted id.
    std::vector<int> consumers;
    std::vector<id_list> sorted_wants;
    std::set<sample_id> wanted;
    for (std::size_t r = 0; r < L_.wants.size(); ++r) {
      if (L_.wants[r].empty()) continue;
      consumers.push_back(static_cast<int>(r));
      sorted_wants.push_back(L_.wants[r]);
      std::sort(sorted_wants.back().begin(), sorted_wants.back().end());
      wanted.insert(L_.wants[r].begin(), L_.wants[r].end());
    }
    std::map<std::string, int> scatters, gathers;
    bool scattered = false;
    for (std::size_t s = 0; s < plan.stages.size(); ++s) {
      for (const auto& st : plan.stages[s]) {
        if (const auto* gs = std::get_if<redist::gather_step>(&st)) {
          if (scattered) note("stage ", s, ": a gather after a scatter");
          if (!std::is_sorted(gs->srcs.begin(), gs->srcs.end()) ||
              std::adjacent_find(gs->srcs.begin(), gs->srcs.end()) != gs->srcs.end())
            note("stage ", s, ": gather sources ", list_text(gs->srcs), " not strictly ascending");
          if (gs->ids.size() != gs->srcs.size())
            note("stage ", s, ": gather with a wrong number of id lists");
          if (gs->srcs.empty() || gs->srcs.front() != gs->root)
            note("stage ", s, ": gather to root ", gs->root, " from ", list_text(gs->srcs));
          for (const auto& l : gs->ids)
            if (!std::is_sorted(l.begin(), l.end()))
              note("stage ", s, ": gathered ids ", list_text(l), " unsorted");
          for (const auto& k : gs->keys) {
            ++gathers[k];
            const auto key = t_.find_key(k);
            if (key && std::all_of(wanted.begin(), wanted.end(), [&](sample_id id) {
                  const auto i = t_.find_id(id);
                  return i && t_.holds(gs->root, *i, *key);
                }))
              note("stage ", s, ": gather of key '", k, "' to root ", gs->root,
                   ", which holds every wanted id");
          }
          cov("plan_gather_scatter: gathers");
        } else if (const auto* sc = std::get_if<redist::scatter_step>(&st)) {
          scattered = true;
          if (!std::is_sorted(sc->dsts.begin(), sc->dsts.end()) ||
              std::adjacent_find(sc->dsts.begin(), sc->dsts.end()) != sc->dsts.end())
            note("stage ", s, ": scatter destinations ", list_text(sc->dsts), " not strictly ascending");
          if (sc->ids.size() != sc->dsts.size())
            note("stage ", s, ": scatter with a wrong number of id lists");
          if (sc->dsts != consumers || sc->ids != sorted_wants)
            note("stage ", s, ": scatter to ", list_text(sc->dsts),
                 ", not to every consumer with its sorted ids");
          for (const auto& k : sc->keys) ++scatters[k];
          cov("plan_gather_scatter: scatters");
          cov("plan_gather_scatter: merged keys", sc->keys.size() > 1);
        } else {
          note("stage ", s, ": neither a gather nor a scatter");
        }
      }
    }
    for (const auto& k : L_.keys) {
      const auto key = t_.find_key(k);
      bool lacking = false;
      for (std::size_t r = 0; r < L_.wants.size() && key && !lacking; ++r)
        for (sample_id id : L_.wants[r]) {
          const auto i = t_.find_id(id);
          if (i && !t_.holds(static_cast<int>(r), *i, *key)) lacking = true;
        }
      if (scatters[k] != (lacking ? 1 : 0))
        note("key '", k, "' is in ", scatters[k], " scatters; ",
             lacking ? "a consumer lacks" : "no consumer lacks", " some of it");
      if (gathers[k] > scatters[k])
        note("key '", k, "' is in ", gathers[k], " gathers and ", scatters[k], " scatters");
      cov("plan_gather_scatter: a key needs no gather", scatters[k] == 1 && gathers[k] == 0);
      cov("plan_gather_scatter: a key needs nothing", !lacking && !wanted.empty());
    }
    cov("plan_gather_scatter: scatter without gather",
        !plan.stages.empty() && !plan.stages.front().empty() &&
            !std::holds_alternative<redist::gather_step>(plan.stages.front().front()));
  }

  void broadcast(const redist::plan& plan, coverage& cov) {
    for (std::size_t s = 0; s < plan.stages.size(); ++s) {
      std::set<int> roots, dsts;
      for (const auto& st : plan.stages[s]) {
        const auto* b = std::get_if<redist::broadcast_step>(&st);
        if (!b) {
          note("stage ", s, ": not a broadcast_step");
          continue;
        }
        if (!roots.insert(b->root).second) note("stage ", s, ": two steps from root ", b->root);
        for (int d : b->dsts)
          if (!dsts.insert(d).second) note("stage ", s, ": rank ", d, " receives in two steps");
        if (b->dsts.empty() || !std::is_sorted(b->dsts.begin(), b->dsts.end()) ||
            std::adjacent_find(b->dsts.begin(), b->dsts.end()) != b->dsts.end() ||
            std::binary_search(b->dsts.begin(), b->dsts.end(), b->root))
          note("stage ", s, ": root ", b->root, ", destinations ", list_text(b->dsts));
        if (b->ids.empty()) note("stage ", s, ": a broadcast of no ids");
        // The root is a holder sharing a node with the most destinations.
        const int rpn = L_.options.ranks_per_node;
        auto local = [&](int h) {
          return std::count_if(b->dsts.begin(), b->dsts.end(), [&](int d) { return d / rpn == h / rpn; });
        };
        for (const auto& k : b->keys)
          for (sample_id id : b->ids) {
            const auto key = t_.find_key(k);
            const auto i = t_.find_id(id);
            if (!key || !i) continue;
            for (int h : t_.holders(*i, *key))
              if (local(h) > local(b->root))
                note("stage ", s, ": root ", b->root, " sends id ", id, ", key '", k, "' to ",
                     list_text(b->dsts), ", though holder ", h, " shares a node with more of them");
          }
        cov("plan_broadcast: several destinations", b->dsts.size() > 1);
        cov("plan_broadcast: merged keys", b->keys.size() > 1);
      }
      cov("plan_broadcast: several steps in a stage", plan.stages[s].size() > 1);
    }
    cov("plan_broadcast: more than 64 stages", plan.stages.size() > 64);
  }

  const layout& L_;
  const redist::storage_tracker& t_;
  std::map<std::string, std::size_t> group_;
  std::vector<std::string> problems_;
};

// Failures: the first few in full, every one counted; the test fails if there is any.
struct failures {
  int count = 0;
  void add(std::uint64_t seed, const layout& L, const std::string& what,
           const std::vector<std::string>& problems) {
    if (problems.empty()) return;
    if (++count > max_reported) return;
    std::string text = cat("seed ", seed, " (REDIST_TEST_SEED=", seed, " REDIST_TEST_CASES=1): ", what,
                           "\n  layout: ", L.text);
    for (const auto& p : problems) text += "\n    " + p;
    FAIL_CHECK(text);
  }
};

std::string what_of(const std::exception& e) { return e.what(); }

}  // namespace

TEST_CASE("planners: every plan of a random layout checks out and keeps its planner's invariants") {
  const std::uint64_t base = base_seed();
  const int cases = case_count();
  coverage cov;
  failures fail;
  std::size_t steps = 0;
  for (int c = 0; c < cases; ++c) {
    const std::uint64_t seed = base + static_cast<std::uint64_t>(c);
    start_case(seed, "random layouts");
    const layout L = generate(seed, cov);
    try {
      const auto tracker = build(L.ranks, L.records);
      checker check(L, tracker);
      for (const auto& p : planners) {
        running.what = p.name;
        try {
          const auto plan = run(p, tracker, L);
          steps += plan.step_count();
          fail.add(seed, L, p.name, check.check(p, plan, cov));
        } catch (const std::exception& e) {
          fail.add(seed, L, p.name, {cat("threw on a valid request: ", what_of(e))});
        }
      }
    } catch (const std::exception& e) {
      fail.add(seed, L, "storage_tracker", {cat("threw on valid records: ", what_of(e))});
    }
  }
  running = {};
  CHECK_MESSAGE(fail.count == 0, fail.count, " failing (seed, planner) cases; seeds from ", base);
  if (verbose()) {
    std::string text = cat(cases, " layouts from seed ", base, ", ", steps, " steps planned; coverage:");
    for (const auto& [what, n] : cov.counts) text += cat("\n  ", what, ": ", n);
    MESSAGE(text);
  }
  // The generator reaches every corner it was written for (checked over enough layouts).
  if (cases >= coverage_cases) {
    for (const char* what : {"1 rank",
                             "16 ranks",
                             "0 samples",
                             "1 keys",
                             "3 keys",
                             "unrequested key in the tracker",
                             "producer replicas hold",
                             "consumers: independent ranks",
                             "consumer grid is the producer's",
                             "consumer grid on a subset",
                             "consumers: replicas",
                             "empty ranks",
                             "0-byte entries",
                             "extra holders",
                             "requested key absent on an unwanted sample",
                             "ids already present on a consumer",
                             "wants shorter than the ranks",
                             "key groups",
                             "an empty key group",
                             "plan_all_to_all: empty plan",
                             "plan_all_to_all: a payload shared by several routes",
                             "plan_all_to_all: several stages",
                             "plan_gather_scatter: gathers",
                             "plan_gather_scatter: merged keys",
                             "plan_gather_scatter: scatter without gather",
                             "plan_broadcast: several destinations",
                             "plan_broadcast: merged keys",
                             "plan_broadcast: several steps in a stage",
                             "plan_broadcast: more than 64 stages",
                             "plan_gather_scatter: a key needs no gather",
                             "plan_gather_scatter: a key needs nothing",
                             "nothing wanted"}) {
      INFO("coverage: ", what);
      CHECK(cov.counts[what] > 0);
    }
  }
}

TEST_CASE("planners: the same request gives the same plan, whatever order the holdings were recorded in") {
  const std::uint64_t base = base_seed();
  const int cases = std::max(1, case_count() / 15);
  coverage cov;
  failures fail;
  for (int c = 0; c < cases; ++c) {
    const std::uint64_t seed = base + static_cast<std::uint64_t>(c);
    start_case(seed, "determinism");
    const layout L = generate(seed, cov);
    // Two shuffles; the second also puts the keys' first records in reverse name order, so the builder meets
    // the keys in another order than the generator and the first shuffle did.
    random_source g(seed ^ 0x5eedf00dULL);
    std::vector<record> shuffled = L.records, reversed = L.records;
    g.shuffle(shuffled);
    g.shuffle(reversed);
    std::stable_sort(reversed.begin(), reversed.end(),
                     [](const record& a, const record& b) { return a.key > b.key; });
    std::vector<std::string> problems;
    try {
      const auto t0 = build(L.ranks, L.records);
      const auto t1 = build(L.ranks, shuffled);
      const auto t2 = build(L.ranks, reversed);
      for (const auto& p : planners) {
        const auto plan = run(p, t0, L);
        if (run(p, t0, L) != plan) problems.push_back(cat(p.name, ": planning twice gives two plans"));
        if (run(p, t1, L) != plan) problems.push_back(cat(p.name, ": shuffled records give another plan"));
        if (run(p, t2, L) != plan)
          problems.push_back(
              cat(p.name, ": records with keys first seen in reverse order give another plan"));
      }
    } catch (const std::exception& e) {
      problems.push_back(cat("threw: ", what_of(e)));
    }
    fail.add(seed, L, "determinism", problems);
  }
  running = {};
  CHECK_MESSAGE(fail.count == 0, fail.count, " seeds plan differently; seeds from ", base);
}

TEST_CASE("planners: invalid requests throw redist::error") {
  const std::uint64_t base = base_seed();
  const int cases = std::max(1, case_count() / 10);
  coverage cov;
  failures fail;
  std::map<int, int> tried;  // per variant
  for (int c = 0; c < cases; ++c) {
    const std::uint64_t seed = base + static_cast<std::uint64_t>(c);
    start_case(seed, "invalid requests");
    const layout L = generate(seed, cov);
    layout bad = L;
    random_source g(seed ^ 0xbadbadULL);
    auto some_rank = [&] {
      const int r = g.between(0, L.ranks - 1);
      if (bad.wants.size() <= sz(r)) bad.wants.resize(sz(r) + 1);
      return r;
    };
    auto insert_at_random = [&](id_list& l, sample_id id) {
      l.insert(l.begin() + g.between(0, static_cast<int>(l.size())), id);
    };
    std::string what;
    int variant = g.between(0, 7);
    if (L.keys.empty() && (variant == 5 || variant == 6)) variant = 2;  // they need a requested key
    switch (variant) {
      case 0: {  // an id nobody holds
        sample_id id = g.bits();
        while (std::find(L.ids.begin(), L.ids.end(), id) != L.ids.end()) ++id;
        const int r = some_rank();
        insert_at_random(bad.wants[sz(r)], id);
        what = cat("rank ", r, " wants unknown id ", id);
        break;
      }
      case 1: {  // a rank past the tracker's
        bad.wants.resize(sz(L.ranks + g.between(1, 3)));
        if (!L.ids.empty()) bad.wants.back().push_back(g.pick(L.ids));
        what = cat("wants for ", bad.wants.size(), " ranks");
        break;
      }
      case 2: {  // an unknown key
        bad.keys.insert(bad.keys.begin() + g.between(0, static_cast<int>(bad.keys.size())), "no_such_key");
        what = "unknown key";
        break;
      }
      case 3: {  // a wanted id lacking a requested key
        if (L.absent.empty()) {
          bad.keys.push_back("tokens_missing");
          what = "unknown key (no absent entry)";
          break;
        }
        const auto& [id, key] = g.pick(L.absent);
        if (std::find(bad.keys.begin(), bad.keys.end(), key) == bad.keys.end()) {
          bad.keys.push_back(key);
          if (!bad.options.key_groups.empty()) bad.options.key_groups.push_back({key});
        }
        const int r = some_rank();
        auto& w = bad.wants[sz(r)];
        if (std::find(w.begin(), w.end(), id) == w.end()) insert_at_random(w, id);
        what = cat("rank ", r, " wants id ", id, " with key '", key, "', which it lacks");
        break;
      }
      case 4: {  // an id wanted twice
        if (L.ids.empty()) {
          bad.options.ranks_per_node = 0;
          what = "ranks_per_node 0 (no ids)";
          break;
        }
        const int r = some_rank();
        auto& w = bad.wants[sz(r)];
        const sample_id id = w.empty() ? g.pick(L.ids) : g.pick(w);
        if (w.empty()) insert_at_random(w, id);
        insert_at_random(w, id);
        what = cat("rank ", r, " wants id ", id, " twice");
        break;
      }
      case 5: {  // a key requested twice
        bad.keys.insert(bad.keys.begin() + g.between(0, static_cast<int>(bad.keys.size())), g.pick(L.keys));
        what = "a key requested twice";
        break;
      }
      case 6: {  // key groups that are no partition of the keys
        auto& groups = bad.options.key_groups;
        if (groups.empty()) groups.push_back(L.keys);
        const int how = g.between(0, 2);
        if (how == 0) {
          groups.push_back({g.pick(L.keys)});  // a key in two groups
        } else if (how == 1) {
          groups.push_back({"mask_or_not"});  // a key that is not requested
        } else {
          for (auto& gr : groups) std::erase(gr, L.keys.back());  // a key in no group
        }
        what = cat("key groups, case ", how);
        break;
      }
      default: {
        bad.options.ranks_per_node = -g.between(0, 2);
        what = cat("ranks_per_node ", bad.options.ranks_per_node);
        break;
      }
    }
    ++tried[variant];
    std::vector<std::string> problems;
    try {
      const auto tracker = build(L.ranks, L.records);
      for (const auto& p : planners) {
        try {
          (void)run(p, tracker, bad);
          problems.push_back(cat(p.name, " accepted it"));
        } catch (const redist::error&) {
        } catch (const std::exception& e) {
          problems.push_back(cat(p.name, " threw something other than redist::error: ", what_of(e)));
        }
      }
    } catch (const std::exception& e) {
      problems.push_back(cat("storage_tracker threw: ", what_of(e)));
    }
    fail.add(seed, L, cat("invalid request: ", what), problems);
  }
  running = {};
  CHECK_MESSAGE(fail.count == 0, fail.count, " invalid requests were not refused; seeds from ", base);
  if (verbose()) {
    std::string text = cat(cases, " invalid requests; per variant:");
    for (const auto& [variant, n] : tried) text += cat(" ", variant, ": ", n);
    MESSAGE(text);
  }
}
