// Seeded random layouts for redistribute(): who holds which samples and who wants which, keys of any dtype
// and trailing shape, and the checks of a result against contents computed from (seed, id, key, element)
// alone.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../unit/splitmix.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/core/topology.hpp"
#include "redist/options.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/redistribute.hpp"

namespace redist::test {

using rng = std::mt19937_64;

inline int draw_int(rng& g, int lo, int hi) {  // uniform in [lo, hi]
  return lo + static_cast<int>(g() % static_cast<std::uint64_t>(hi - lo + 1));
}

template <class T>
std::string list_string(const std::vector<T>& v) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << ']';
  return os.str();
}

// ---- the independent expectation: contents and lengths are pure functions of (seed, id, key, element) ----

struct key_spec {
  std::string name;
  dtype type;
  std::vector<std::int64_t> trailing;
};

// Rows of bf16 matrices, f32 scalars, bool vectors and i64 scalars; ascending by name, as the one-call form
// returns every key by default.
inline std::vector<key_spec> default_keys() {
  return {{"hidden", dtype::bf16, {3, 2}},
          {"logprobs", dtype::f32, {}},
          {"mask", dtype::boolean, {4}},
          {"tokens", dtype::i64, {}}};
}

// 1 to max_keys keys of any dtype, scalar rows, vectors, matrices or rows of no elements (a zero extent),
// named so that ascending by name is the order drawn.
inline std::vector<key_spec> random_keys(rng& g, int max_keys) {
  std::vector<key_spec> keys(static_cast<std::size_t>(draw_int(g, 1, max_keys)));
  for (std::size_t k = 0; k < keys.size(); ++k) {
    auto& spec = keys[k];
    spec.type = static_cast<dtype>(g() % dtype_count);
    switch (g() % 6) {
      case 0:
      case 1:
        break;
      case 2:
        spec.trailing = {draw_int(g, 1, 5)};
        break;
      case 3:
        spec.trailing = {draw_int(g, 1, 3), draw_int(g, 1, 3)};
        break;
      case 4:
        spec.trailing = {1, draw_int(g, 1, 4), 1};
        break;
      default:
        spec.trailing = {g() % 2 ? 0 : draw_int(g, 1, 3), 0};
    }
    spec.name = "k" + std::to_string(k) + "_" + std::string(name(spec.type));
  }
  return keys;
}

struct contents {
  std::uint64_t seed = 0;
  bool narrow = false;  // values that survive float32 staging
  int max_len = 5;      // tokens per sequence
  std::vector<key_spec> keys = default_keys();
};

inline std::size_t key_index(const contents& c, const std::string& name) {
  for (std::size_t k = 0; k < c.keys.size(); ++k)
    if (c.keys[k].name == name) return k;
  throw std::logic_error("unknown key " + name);
}
inline std::vector<std::string> all_keys(const contents& c) {
  std::vector<std::string> names;
  for (const auto& k : c.keys) names.push_back(k.name);
  return names;
}
inline std::size_t elements_per_row(const key_spec& spec) {
  std::size_t n = 1;
  for (auto e : spec.trailing) n *= static_cast<std::size_t>(e);
  return n;
}

// Sequence lengths of (id, key): 0 to 3 sequences of 0 to max_len tokens, zero-length ones included.
inline std::vector<std::int64_t> seqlens_of(std::uint64_t seed, sample_id id, std::size_t key, int max_len) {
  const std::uint64_t h = mix(seed, id, key);
  const std::size_t count = h % 8 == 0 ? 0 : 1 + (h >> 3) % 3;
  std::vector<std::int64_t> lens;
  for (std::size_t s = 0; s < count; ++s)
    lens.push_back(static_cast<std::int64_t>(mix(h, s) % static_cast<std::uint64_t>(max_len + 1)));
  return lens;
}

// Element `e` of (id, key) of type t. Wide values use every bit pattern but non-finite floats (byte staging
// only); narrow ones survive a trip through float32, up to its limits (integers of magnitude 2^24). Floats
// are always finite, so that float32 staging returns their exact bits.
inline void element(std::uint64_t seed, sample_id id, std::size_t key, std::size_t e, dtype t, bool narrow,
                    std::byte* out) {
  const std::uint64_t h = mix(mix(seed, id, key), e);
  auto put = [out](auto v) { std::memcpy(out, &v, sizeof v); };
  auto finite_f32_bits = [](std::uint64_t x) {
    auto bits = static_cast<std::uint32_t>(x);
    if ((bits & 0x7f800000u) == 0x7f800000u) bits ^= 0x40000000u;  // Inf/NaN -> finite
    return bits;
  };
  constexpr std::int64_t f32_int = std::int64_t{1} << 24;  // the largest magnitude float32 holds exactly
  switch (t) {
    case dtype::i64: {
      std::int64_t v = narrow ? static_cast<std::int64_t>(h % (2 * f32_int + 1)) - f32_int
                              : static_cast<std::int64_t>((h >> 2) | (std::uint64_t{1} << 40));
      if (!narrow && (h & 1)) v = -v;
      return put(v);
    }
    case dtype::i32:
      return put(narrow
                     ? static_cast<std::int32_t>(static_cast<std::int64_t>(h % (2 * f32_int + 1)) - f32_int)
                     : static_cast<std::int32_t>(static_cast<std::uint32_t>(h)));
    case dtype::i16:
      return put(static_cast<std::int16_t>(static_cast<std::uint16_t>(h)));
    case dtype::i8:
      return put(static_cast<std::int8_t>(static_cast<std::uint8_t>(h)));
    case dtype::u8:
      return put(static_cast<std::uint8_t>(h));
    case dtype::boolean:
      return put((h & 1) != 0);
    case dtype::f32:
      return put(finite_f32_bits(h));
    case dtype::f64: {
      if (narrow) {
        float f = 0;
        const std::uint32_t bits = finite_f32_bits(h);
        std::memcpy(&f, &bits, sizeof f);
        return put(static_cast<double>(f));
      }
      std::uint64_t bits = h;
      if ((bits & 0x7ff0000000000000ull) == 0x7ff0000000000000ull) bits ^= 0x4000000000000000ull;
      return put(bits);
    }
    case dtype::f16: {
      auto bits = static_cast<std::uint16_t>(h);
      if ((bits & 0x7c00u) == 0x7c00u) bits = static_cast<std::uint16_t>(bits ^ 0x4000u);
      return put(bits);
    }
    case dtype::bf16: {
      auto bits = static_cast<std::uint16_t>(h);
      if ((bits & 0x7f80u) == 0x7f80u) bits = static_cast<std::uint16_t>(bits ^ 0x4000u);
      return put(bits);
    }
  }
  throw std::logic_error("no values for this dtype");
}

inline std::vector<std::int64_t> expected_seqlens(const contents& c, sample_id id, std::size_t key) {
  return seqlens_of(c.seed, id, key, c.max_len);
}

inline std::vector<std::byte> expected_bytes(const contents& c, sample_id id, std::size_t key) {
  std::int64_t tokens = 0;
  for (auto l : expected_seqlens(c, id, key)) tokens += l;
  const auto& spec = c.keys[key];
  const std::size_t n = static_cast<std::size_t>(tokens) * elements_per_row(spec);
  const std::size_t size = size_of(spec.type);
  std::vector<std::byte> out(n * size);
  for (std::size_t e = 0; e < n; ++e) element(c.seed, id, key, e, spec.type, c.narrow, out.data() + e * size);
  return out;
}

using batch = sequence_batch<>;

// A batch of `ids` with every key, fields in `key_order`; metadata only unless with_data.
inline batch make_batch(const contents& c, const std::vector<sample_id>& ids,
                        const std::vector<std::size_t>& key_order, bool with_data) {
  std::vector<batch::field> fields;
  for (std::size_t k : key_order) {
    const auto& spec = c.keys[k];
    seqlen_table lens;
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
      host_tensor t(spec.type, shape);
      if (t.nbytes() != bytes.size())
        throw std::logic_error("make_batch: the tensor's size is not the bytes'");
      if (!bytes.empty()) std::memcpy(t.data(), bytes.data(), bytes.size());
      f.data = std::move(t);
    }
    fields.push_back(std::move(f));
  }
  return batch(ids, std::move(fields));
}

// The first way in which sample `pos` of `b` differs from what (id, key) must hold; empty when it does not.
inline std::string sample_problem(const contents& c, const batch& b, std::size_t pos,
                                  const std::string& key) {
  const sample_id id = b.ids()[pos];
  const std::size_t k = key_index(c, key);
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
inline std::string batch_problem(const contents& c, const batch& b, const std::vector<sample_id>& ids,
                                 const std::vector<std::string>& keys) {
  try {
    b.validate();
  } catch (const error& e) {
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
    const auto& spec = c.keys[key_index(c, key)];
    if (f.dtype != spec.type || f.trailing_shape != spec.trailing)
      return "key '" + key + "' is " + std::string(name(f.dtype)) + list_string(f.trailing_shape);
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
  int max_block = 5;  // samples per producer block, at least 1
  int max_len = 5;    // tokens per sequence
};

// data x tensor x pipe == n, drawn at random.
inline topology random_topology(rng& g, int n) {
  std::vector<int> divisors;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) divisors.push_back(d);
  const int data = divisors[g() % divisors.size()];
  divisors.clear();
  for (int d = 1; d <= n / data; ++d)
    if (n / data % d == 0) divisors.push_back(d);
  const int tensor = divisors[g() % divisors.size()];
  const int pipe = n / data / tensor;
  if (g() % 2) return topology({{"pipe", pipe}, {"data", data}, {"tensor", tensor}});
  return topology({{"data", data}, {"pipe", pipe}, {"tensor", tensor}});
}

inline std::string topology_string(const topology& t) {
  std::string s;
  for (std::size_t d = 0; d < t.ndims(); ++d)
    s += (d ? " x " : "") + t.dim_names()[d] + "=" + std::to_string(t.extents()[d]);
  return s;
}

// Every rank computes the same layout from (seed, n): no communication needed to know what anyone holds.
// Each rank's batch has `key_count` keys, in an order of its own.
inline layout random_layout(std::uint64_t seed, int n, const layout_limits& lim,
                            std::size_t key_count = default_keys().size()) {
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
    const int count = draw_int(g, 0, lim.max_block);
    const sample_id base = g() % 4 == 0 ? g() % 1000 : g();  // small ids, or anywhere in 64 bits
    for (int i = 0; i < count; ++i) {
      sample_id id = base + static_cast<sample_id>(draw_int(g, 0, 3) * 7 + i * 31);
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
        const auto r = static_cast<std::size_t>(draw_int(g, 0, n - 1));
        L.producers = "rank " + std::to_string(r) + " alone";
        for (int b = 0; b < 2; ++b) {
          const auto block = fresh_block();
          L.held[r].insert(L.held[r].end(), block.begin(), block.end());
        }
      }
    }
  std::vector<std::size_t> keys(key_count);
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

inline batch local_batch(const contents& c, const layout& L, int r, bool with_data = true) {
  const auto u = static_cast<std::size_t>(r);
  if (L.bare[u]) return batch{};
  return make_batch(c, L.held[u], L.key_order[u], with_data);
}

// The keys of rank r's batch, in its order.
inline std::vector<std::string> batch_keys(const contents& c, const layout& L, int r) {
  const auto u = static_cast<std::size_t>(r);
  std::vector<std::string> names;
  if (!L.bare[u])
    for (auto k : L.key_order[u]) names.push_back(c.keys[k].name);
  return names;
}

// ---- running cases ----

// The library's own name of a pattern, as its call descriptions write it.
using redist::detail::pattern_name;

inline constexpr plan_pattern all_patterns[] = {plan_pattern::one_hop, plan_pattern::gather_scatter,
                                                plan_pattern::broadcast};

// One call of the one-call form on this rank; empty when the result is exactly what the layout asks for.
// `delivered`, when given, receives the bytes of the result's tensors.
template <class Staging, class... Policies, class Comm>
std::string one_call_problem(const Comm& comm, const layout& L, const contents& c,
                             const redistribute_options& opts, std::size_t* delivered = nullptr) {
  const int me = comm.rank();
  const auto& wanted = L.wanted[static_cast<std::size_t>(me)];
  try {
    const batch local = local_batch(c, L, me);
    const batch got = redistribute<Staging, Policies...>(comm, local, wanted, opts);
    if (delivered && got.has_data())
      for (auto k : got.keys()) *delivered += got.data(k).nbytes();
    if (auto p = batch_problem(c, got, wanted, opts.keys.empty() ? all_keys(c) : opts.keys); !p.empty())
      return p;
    // The caller's batch is borrowed, never changed.
    return batch_problem(c, local, L.held[static_cast<std::size_t>(me)], batch_keys(c, L, me));
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
}

// ---- the plan-based form ----

inline plan make_plan(plan_pattern pattern, const storage_tracker& tracker, const std::vector<id_list>& wants,
                      const std::vector<std::string>& keys, int ranks_per_node) {
  const plan_options po{.ranks_per_node = ranks_per_node};
  switch (pattern) {
    case plan_pattern::gather_scatter:
      return plan_gather_scatter(tracker, wants, keys, po);
    case plan_pattern::broadcast:
      return plan_broadcast(tracker, wants, keys, po);
    default:
      return plan_all_to_all(tracker, wants, keys, po);
  }
}

inline std::size_t all_to_all_steps(const plan& p) {
  std::size_t n = 0;
  for (const auto& stage : p.stages)
    for (const auto& s : stage) n += std::holds_alternative<all_to_all_step>(s) ? 1 : 0;
  return n;
}

// Builds the catalog, tracker and plan on every rank from the layout alone (every rank knows every rank's
// metadata), runs the plan against a store of this rank's batch, and checks the store: it keeps its own
// pairs, gains exactly the wanted ones (a gather-scatter root also keeps what it relayed), and every pair it
// holds has the right bytes. `steps` receives the plan's all-to-all step count, `delivered` adds the bytes of
// the wanted samples collected from the store.
template <class Staging, class... Policies, class Comm>
std::string plan_based_problem(const Comm& comm, const layout& L, const contents& c, plan_pattern pattern,
                               int rpn, const std::vector<std::string>& keys,
                               const redistribute_options& opts = {}, std::size_t* steps = nullptr,
                               std::size_t* delivered = nullptr) {
  const int me = comm.rank();
  const auto mu = static_cast<std::size_t>(me);
  try {
    std::vector<batch> metas;
    catalog cat;
    for (int r = 0; r < L.ranks; ++r) {
      metas.push_back(local_batch(c, L, r, false));
      cat.add(metas.back(), r);
    }
    const auto tracker = storage_tracker::from_batches(metas);
    const plan p = make_plan(pattern, tracker, L.wanted, keys, rpn);
    if (steps) *steps = all_to_all_steps(p);
    sample_store<> store;
    store.add(local_batch(c, L, me));
    redistribute<Staging, Policies...>(comm, store, p, cat, opts);

    std::set<std::pair<sample_id, std::string>> must, relayable;
    const auto every_key = all_keys(c);
    if (!L.bare[mu])
      for (sample_id id : L.held[mu])
        for (const auto& k : every_key) must.emplace(id, k);
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
      if (!must.count({id, k}) && (pattern != plan_pattern::gather_scatter || !relayable.count({id, k})))
        return "the store gained id " + std::to_string(id) + ", key '" + k + "', which it did not want";
      const auto loc = store.find(id, k);
      if (!loc) return "held() lists id " + std::to_string(id) + ", key '" + k + "' but find() does not";
      if (auto q = sample_problem(c, *loc->batch, loc->position, k); !q.empty()) return "in the store: " + q;
    }
    // (collect() needs a schema for each key: a store that never saw a key cannot collect it, not even for
    // no ids.)
    if (L.wanted[mu].empty()) return {};
    const batch got = store.collect(L.wanted[mu], keys);
    if (delivered && got.has_data())
      for (auto k : got.keys()) *delivered += got.data(k).nbytes();
    return batch_problem(c, got, L.wanted[mu], keys);
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
}

}  // namespace redist::test
