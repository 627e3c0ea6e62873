// MPI tests of redist::redistribute(): seeded random producer/consumer layouts on the world, on a
// communicator numbered backwards and on a sub-communicator; every plan pattern x every staging, tiny staging
// budgets, the plan-based form and policy substitution. Every byte is checked against contents computed
// independently.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/topology.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/redistribute.hpp"

namespace {

using redist::dtype;
using redist::sample_id;
using batch = redist::sequence_batch<>;
using redist::test::all_ranks;

// ---- the independent expectation: contents and lengths are pure functions of (seed, id, key, element) ----

using redist::test::mix;

struct key_spec {
  std::string name;
  dtype type;
  std::vector<std::int64_t> trailing;
};

// Every sample has these keys. Ascending by name, as the one-call form returns them by default.
const std::vector<key_spec>& key_specs() {
  static const std::vector<key_spec> specs = {{"hidden", dtype::bf16, {3, 2}},
                                              {"logprobs", dtype::f32, {}},
                                              {"mask", dtype::boolean, {4}},
                                              {"tokens", dtype::i64, {}}};
  return specs;
}
std::size_t key_index(const std::string& name) {
  for (std::size_t k = 0; k < key_specs().size(); ++k)
    if (key_specs()[k].name == name) return k;
  FAIL("unknown key " << name);
  return 0;
}
std::vector<std::string> all_keys() {
  std::vector<std::string> names;
  for (const auto& k : key_specs()) names.push_back(k.name);
  return names;
}
std::size_t elements_per_row(std::size_t key) {
  std::size_t n = 1;
  for (auto e : key_specs()[key].trailing) n *= static_cast<std::size_t>(e);
  return n;
}

// Sequence lengths of (id, key): 0 to 3 sequences of 0 to max_len tokens, zero-length ones included.
std::vector<std::int64_t> seqlens_of(std::uint64_t seed, sample_id id, std::size_t key, int max_len) {
  const std::uint64_t h = mix(seed, id, key);
  const std::size_t count = h % 8 == 0 ? 0 : 1 + (h >> 3) % 3;
  std::vector<std::int64_t> lens;
  for (std::size_t s = 0; s < count; ++s)
    lens.push_back(static_cast<std::int64_t>(mix(h, s) % static_cast<std::uint64_t>(max_len + 1)));
  return lens;
}

// Element `e` of (id, key). Wide values are i64 beyond 2^40 (byte staging only); narrow ones survive a trip
// through float32. Floats are always finite, so that float32 staging returns their exact bits.
void element(std::uint64_t seed, sample_id id, std::size_t key, std::size_t e, bool narrow, std::byte* out) {
  const std::uint64_t h = mix(mix(seed, id, key), e);
  switch (key_specs()[key].type) {
    case dtype::i64: {
      std::int64_t v = narrow ? static_cast<std::int64_t>(h % (1u << 24)) - (1 << 23)
                              : static_cast<std::int64_t>((h >> 2) | (std::uint64_t{1} << 40));
      if (!narrow && (h & 1)) v = -v;
      std::memcpy(out, &v, sizeof v);
      return;
    }
    case dtype::f32: {
      const float v = -static_cast<float>(h % (1u << 20)) / 1024.0f;
      std::memcpy(out, &v, sizeof v);
      return;
    }
    case dtype::bf16: {
      auto bits = static_cast<std::uint16_t>(h);
      if ((bits & 0x7f80u) == 0x7f80u)
        bits = static_cast<std::uint16_t>(bits ^ 0x4000u);  // Inf/NaN -> finite
      std::memcpy(out, &bits, sizeof bits);
      return;
    }
    case dtype::boolean: {
      const bool v = (h & 1) != 0;
      std::memcpy(out, &v, sizeof v);
      return;
    }
    default:
      FAIL("no values for this dtype");
  }
}

struct contents {
  std::uint64_t seed = 0;
  bool narrow = false;  // values that survive float32 staging
  int max_len = 5;
};

std::vector<std::int64_t> expected_seqlens(const contents& c, sample_id id, std::size_t key) {
  return seqlens_of(c.seed, id, key, c.max_len);
}

std::vector<std::byte> expected_bytes(const contents& c, sample_id id, std::size_t key) {
  std::int64_t tokens = 0;
  for (auto l : expected_seqlens(c, id, key)) tokens += l;
  const std::size_t n = static_cast<std::size_t>(tokens) * elements_per_row(key);
  const std::size_t size = redist::size_of(key_specs()[key].type);
  std::vector<std::byte> out(n * size);
  for (std::size_t e = 0; e < n; ++e) element(c.seed, id, key, e, c.narrow, out.data() + e * size);
  return out;
}

// A batch of `ids` with every key, fields in `key_order`; metadata only unless with_data.
batch make_batch(const contents& c, const std::vector<sample_id>& ids,
                 const std::vector<std::size_t>& key_order, bool with_data) {
  std::vector<batch::field> fields;
  for (std::size_t k : key_order) {
    const auto& spec = key_specs()[k];
    redist::seqlen_table lens;
    std::vector<std::byte> bytes;
    std::int64_t tokens = 0;
    for (sample_id id : ids) {
      const auto l = expected_seqlens(c, id, k);
      lens.push_back(l);
      for (auto x : l) tokens += x;
      if (with_data) {
        const auto b = expected_bytes(c, id, k);
        bytes.insert(bytes.end(), b.begin(), b.end());
      }
    }
    batch::field f{spec.name, spec.type, spec.trailing, std::move(lens), std::nullopt};
    if (with_data) {
      std::vector<std::int64_t> shape{tokens};
      shape.insert(shape.end(), spec.trailing.begin(), spec.trailing.end());
      redist::host_tensor t(spec.type, shape);
      REQUIRE(t.nbytes() == bytes.size());  // no collective is pending: a test bug, not a library one
      if (!bytes.empty()) std::memcpy(t.data(), bytes.data(), bytes.size());
      f.data = std::move(t);
    }
    fields.push_back(std::move(f));
  }
  return batch(ids, std::move(fields));
}

template <class T>
std::string list_string(const std::vector<T>& v) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << ']';
  return os.str();
}

// The first way in which sample `pos` of `b` differs from what (id, key) must hold; empty when it does not.
std::string sample_problem(const contents& c, const batch& b, std::size_t pos, const std::string& key) {
  const sample_id id = b.ids()[pos];
  const std::size_t k = key_index(key);
  const auto lens = b.seqlens(key, pos);
  const auto want_lens = expected_seqlens(c, id, k);
  if (!std::equal(lens.begin(), lens.end(), want_lens.begin(), want_lens.end()))
    return "id " + std::to_string(id) + ", key '" + key + "': seqlens " +
           list_string(std::vector<std::int64_t>(lens.begin(), lens.end())) + ", expected " +
           list_string(want_lens);
  if (!b.has_data()) return {};
  const auto range = b.sample_bytes(key, pos);
  const auto want = expected_bytes(c, id, k);
  const auto* got = static_cast<const std::byte*>(b.data(key).data()) + range.offset;
  if (range.size != want.size() || (range.size != 0 && std::memcmp(got, want.data(), want.size()) != 0)) {
    std::size_t at = 0;
    while (at < std::min(range.size, want.size()) && got[at] == want[at]) ++at;
    return "id " + std::to_string(id) + ", key '" + key + "': " + std::to_string(range.size) +
           " bytes, expected " + std::to_string(want.size()) + ", first difference at byte " +
           std::to_string(at);
  }
  return {};
}

// The first way in which `b` differs from a batch of exactly `ids` and `keys`, in those orders, with data.
std::string batch_problem(const contents& c, const batch& b, const std::vector<sample_id>& ids,
                          const std::vector<std::string>& keys) {
  try {
    b.validate();
  } catch (const redist::error& e) {
    return std::string("the batch is invalid: ") + e.what();
  }
  if (!std::equal(b.ids().begin(), b.ids().end(), ids.begin(), ids.end()))
    return "ids " + list_string(std::vector<sample_id>(b.ids().begin(), b.ids().end())) + ", expected " +
           list_string(ids);
  std::vector<std::string> got_keys;
  for (auto k : b.keys()) got_keys.emplace_back(k);
  if (got_keys != keys) return "keys " + list_string(got_keys) + ", expected " + list_string(keys);
  if (!ids.empty() && !keys.empty() && !b.has_data()) return "the batch has no data";
  for (const auto& key : keys) {
    const auto& f = b.at(key);
    const auto& spec = key_specs()[key_index(key)];
    if (f.dtype != spec.type || f.trailing_shape != spec.trailing)
      return "key '" + key + "' is " + std::string(redist::name(f.dtype)) + list_string(f.trailing_shape);
    for (std::size_t i = 0; i < b.size(); ++i)
      if (auto p = sample_problem(c, b, i, key); !p.empty()) return p;
  }
  return {};
}

// ---- seeded random layouts: who holds which samples, who wants which ----

struct layout {
  int ranks = 1;
  std::vector<std::vector<sample_id>> held;         // per rank, in batch order
  std::vector<std::vector<std::size_t>> key_order;  // per rank, the order of its batch's fields
  std::vector<char> bare;                      // per rank: a default batch (no keys) when it holds nothing
  std::vector<std::vector<sample_id>> wanted;  // per rank, in the order asked
  std::string producers, consumers;            // how they were drawn, for messages

  std::string describe() const {
    std::ostringstream os;
    os << "producers: " << producers << "; consumers: " << consumers;
    for (int r = 0; r < ranks; ++r) {
      const auto u = static_cast<std::size_t>(r);
      os << "\n  rank " << r << " holds " << list_string(held[u]) << (bare[u] ? " (no keys)" : "")
         << ", wants " << list_string(wanted[u]);
    }
    return os.str();
  }
};

struct layout_limits {
  int max_block = 5;  // samples per producer block
  int max_len = 5;    // tokens per sequence
};

using rng = std::mt19937_64;

int draw(rng& g, int lo, int hi) {  // uniform in [lo, hi]
  return lo + static_cast<int>(g() % static_cast<std::uint64_t>(hi - lo + 1));
}

// data x tensor x pipe == n, drawn at random.
redist::topology random_topology(rng& g, int n) {
  std::vector<int> divisors;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) divisors.push_back(d);
  const int data = divisors[g() % divisors.size()];
  divisors.clear();
  for (int d = 1; d <= n / data; ++d)
    if (n / data % d == 0) divisors.push_back(d);
  const int tensor = divisors[g() % divisors.size()];
  const int pipe = n / data / tensor;
  if (g() % 2) return redist::topology({{"pipe", pipe}, {"data", data}, {"tensor", tensor}});
  return redist::topology({{"data", data}, {"pipe", pipe}, {"tensor", tensor}});
}

std::string topology_string(const redist::topology& t) {
  std::string s;
  for (std::size_t d = 0; d < t.ndims(); ++d)
    s += (d ? " x " : "") + t.dim_names()[d] + "=" + std::to_string(t.extents()[d]);
  return s;
}

// Every rank computes the same layout from (seed, n): no communication needed to know what anyone holds.
layout random_layout(std::uint64_t seed, int n, const layout_limits& lim) {
  rng g(seed);
  layout L;
  L.ranks = n;
  const auto un = static_cast<std::size_t>(n);
  L.held.resize(un);
  L.wanted.resize(un);
  L.key_order.resize(un);
  L.bare.resize(un);
  std::set<sample_id> used;
  auto fresh_block = [&] {
    std::vector<sample_id> ids;
    const int count = draw(g, 0, lim.max_block);
    const sample_id base = g() % 4 == 0 ? g() % 1000 : g();  // small ids, or anywhere in 64 bits
    for (int i = 0; i < count; ++i) {
      sample_id id = base + static_cast<sample_id>(draw(g, 0, 3) * 7 + i * 31);
      while (used.count(id)) ++id;
      used.insert(id);
      ids.push_back(id);
    }
    std::shuffle(ids.begin(), ids.end(), g);
    return ids;
  };

  // Producers; at least one sample somewhere.
  while (used.empty()) switch (g() % 3) {
      case 0: {  // a model's topology: the DP head of each data group, or every replica, holds its block
        const auto topo = random_topology(g, n);
        const bool replicas = g() % 2;
        L.producers = topology_string(topo) + (replicas ? ", every replica holds its block" : ", DP heads");
        for (int d = 0; d < topo.extent("data"); ++d) {
          const auto block = fresh_block();
          const auto members = topo.ranks_where({{"data", d}});
          for (int r : members) {
            if (!replicas && r != members.front()) continue;
            auto& h = L.held[static_cast<std::size_t>(r)];
            h = block;
            if (replicas) std::shuffle(h.begin(), h.end(), g);  // a holder's batch order is its own
          }
        }
        break;
      }
      case 1: {  // a random subset of the ranks
        L.producers = "a random subset";
        for (auto& h : L.held)
          if (g() % 3 != 0) h = fresh_block();
        break;
      }
      default: {  // one rank holds everything
        const auto r = static_cast<std::size_t>(draw(g, 0, n - 1));
        L.producers = "rank " + std::to_string(r) + " alone";
        for (int b = 0; b < 2; ++b) {
          const auto block = fresh_block();
          L.held[r].insert(L.held[r].end(), block.begin(), block.end());
        }
      }
    }
  std::vector<std::size_t> keys(key_specs().size());
  for (std::size_t k = 0; k < keys.size(); ++k) keys[k] = k;
  for (std::size_t r = 0; r < un; ++r) {
    L.key_order[r] = keys;
    std::shuffle(L.key_order[r].begin(), L.key_order[r].end(), g);
  }

  // Consumers: every replica of a data group wants its group's block, in its own order or the group's.
  std::vector<sample_id> all(used.begin(), used.end());
  std::shuffle(all.begin(), all.end(), g);
  const auto topo = random_topology(g, n);
  const int groups = topo.extent("data");
  std::vector<std::size_t> cuts{0, all.size()};
  for (int d = 1; d < groups; ++d) cuts.push_back(g() % (all.size() + 1));
  std::sort(cuts.begin(), cuts.end());
  const bool same_order = g() % 2;
  const bool first_stage_only = g() % 4 == 0;
  const bool rewant_own = g() % 2;
  L.consumers = topology_string(topo) + (same_order ? ", one order per group" : ", own order per replica") +
                (first_stage_only ? ", pipe 0 only" : "") + (rewant_own ? ", some want ids they hold" : "");
  for (int d = 0; d < groups; ++d) {
    const auto du = static_cast<std::size_t>(d);
    std::vector<sample_id> block(all.begin() + static_cast<std::ptrdiff_t>(cuts[du]),
                                 all.begin() + static_cast<std::ptrdiff_t>(cuts[du + 1]));
    std::shuffle(block.begin(), block.end(), g);
    for (int r : topo.ranks_where({{"data", d}})) {
      if (first_stage_only && topo.coord(r, "pipe") != 0) continue;
      auto& w = L.wanted[static_cast<std::size_t>(r)];
      w = block;
      if (!same_order) std::shuffle(w.begin(), w.end(), g);
    }
  }
  if (rewant_own)
    for (std::size_t r = 0; r < un; ++r)
      for (sample_id id : L.held[r])
        if (g() % 2 && std::find(L.wanted[r].begin(), L.wanted[r].end(), id) == L.wanted[r].end())
          L.wanted[r].insert(
              L.wanted[r].begin() + static_cast<std::ptrdiff_t>(g() % (L.wanted[r].size() + 1)), id);
  // A rank that holds nothing may pass a batch without keys. (For no sample anywhere, see the test case "no
  // samples anywhere".)
  for (std::size_t r = 0; r < un; ++r) L.bare[r] = L.held[r].empty() && g() % 2;
  return L;
}

batch local_batch(const contents& c, const layout& L, int r, bool with_data = true) {
  const auto u = static_cast<std::size_t>(r);
  if (L.bare[u]) return batch{};
  return make_batch(c, L.held[u], L.key_order[u], with_data);
}

// The keys of rank r's batch, in its order.
std::vector<std::string> batch_keys(const layout& L, int r) {
  const auto u = static_cast<std::size_t>(r);
  std::vector<std::string> names;
  if (!L.bare[u])
    for (auto k : L.key_order[u]) names.push_back(key_specs()[k].name);
  return names;
}

// ---- running cases ----

std::string pattern_name(redist::plan_pattern p) {
  switch (p) {
    case redist::plan_pattern::one_hop:
      return "one_hop";
    case redist::plan_pattern::gather_scatter:
      return "gather_scatter";
    case redist::plan_pattern::broadcast:
      return "broadcast";
  }
  return "?";
}
constexpr redist::plan_pattern all_patterns[] = {
    redist::plan_pattern::one_hop, redist::plan_pattern::gather_scatter, redist::plan_pattern::broadcast};

template <class Staging>
constexpr bool narrow_values = std::is_same_v<Staging, redist::float32_staging>;
template <class Staging>
std::string staging_name() {
  return narrow_values<Staging> ? "float32_staging" : "byte_staging";
}

// One call of the one-call form on this rank; empty when the result is exactly what the layout asks for.
template <class Staging, class... Policies>
std::string one_call_problem(const redist::mpi_communicator& comm, const layout& L, const contents& c,
                             const redist::redistribute_options& opts) {
  const int me = comm.rank();
  const auto& wanted = L.wanted[static_cast<std::size_t>(me)];
  try {
    const batch local = local_batch(c, L, me);
    const batch got = redist::redistribute<Staging, Policies...>(comm, local, wanted, opts);
    if (auto p = batch_problem(c, got, wanted, opts.keys.empty() ? all_keys() : opts.keys); !p.empty())
      return p;
    // The caller's batch is borrowed, never changed.
    return batch_problem(c, local, L.held[static_cast<std::size_t>(me)], batch_keys(L, me));
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
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

// ---- the plan-based form ----

redist::plan make_plan(redist::plan_pattern pattern, const redist::storage_tracker& tracker,
                       const std::vector<redist::id_list>& wants, const std::vector<std::string>& keys,
                       int ranks_per_node) {
  const redist::plan_options po{.ranks_per_node = ranks_per_node};
  switch (pattern) {
    case redist::plan_pattern::gather_scatter:
      return redist::plan_gather_scatter(tracker, wants, keys, po);
    case redist::plan_pattern::broadcast:
      return redist::plan_broadcast(tracker, wants, keys, po);
    default:
      return redist::plan_all_to_all(tracker, wants, keys, po);
  }
}

std::size_t all_to_all_steps(const redist::plan& p) {
  std::size_t n = 0;
  for (const auto& stage : p.stages)
    for (const auto& s : stage) n += std::holds_alternative<redist::all_to_all_step>(s) ? 1 : 0;
  return n;
}

// Builds the catalog, tracker and plan on every rank from the layout alone (every rank knows every rank's
// metadata), runs the plan against a store of this rank's batch, and checks the store: it keeps its own
// pairs, gains exactly the wanted ones (a gather-scatter root also keeps what it relayed), and every pair it
// holds has the right bytes. `steps` receives the plan's all-to-all step count.
template <class Staging, class... Policies>
std::string plan_based_problem(const redist::mpi_communicator& comm, const layout& L, const contents& c,
                               redist::plan_pattern pattern, int rpn, const std::vector<std::string>& keys,
                               std::size_t* steps = nullptr) {
  const int me = comm.rank();
  const auto mu = static_cast<std::size_t>(me);
  try {
    std::vector<batch> metas;
    redist::catalog cat;
    for (int r = 0; r < L.ranks; ++r) {
      metas.push_back(local_batch(c, L, r, false));
      cat.add(metas.back(), r);
    }
    const auto tracker = redist::storage_tracker::from_batches(metas);
    const redist::plan p = make_plan(pattern, tracker, L.wanted, keys, rpn);
    if (steps) *steps = all_to_all_steps(p);
    redist::sample_store<> store;
    store.add(local_batch(c, L, me));
    redist::redistribute<Staging, Policies...>(comm, store, p, cat, {});

    std::set<std::pair<sample_id, std::string>> must, relayable;
    if (!L.bare[mu])
      for (sample_id id : L.held[mu])
        for (const auto& k : all_keys()) must.emplace(id, k);
    for (sample_id id : L.wanted[mu])
      for (const auto& k : keys) must.emplace(id, k);
    for (const auto& w : L.wanted)
      for (sample_id id : w)
        for (const auto& k : keys) relayable.emplace(id, k);
    const auto held = store.held();
    const std::set<std::pair<sample_id, std::string>> have(held.begin(), held.end());
    if (have.size() != store.pairs())
      return "held() lists " + std::to_string(have.size()) + " pairs, pairs() says " +
             std::to_string(store.pairs());
    for (const auto& [id, k] : must)
      if (!have.count({id, k})) return "the store lacks id " + std::to_string(id) + ", key '" + k + "'";
    for (const auto& [id, k] : have) {
      if (!must.count({id, k}) &&
          (pattern != redist::plan_pattern::gather_scatter || !relayable.count({id, k})))
        return "the store gained id " + std::to_string(id) + ", key '" + k + "', which it did not want";
      const auto loc = store.find(id, k);
      if (!loc) return "held() lists id " + std::to_string(id) + ", key '" + k + "' but find() does not";
      if (auto q = sample_problem(c, *loc->batch, loc->position, k); !q.empty()) return "in the store: " + q;
    }
    // (collect() needs a schema for each key: a store that never saw a key cannot collect it, not even for
    // no ids.)
    if (L.wanted[mu].empty()) return {};
    return batch_problem(c, store.collect(L.wanted[mu], keys), L.wanted[mu], keys);
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
}

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
      comm, L, c, redist::plan_pattern::one_hop, 1, all_keys(), &steps);
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
