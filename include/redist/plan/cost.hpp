// redist::estimate_cost, traffic_matrix, describe: what a plan puts on the wire (bytes each rank sends and
// receives per step, totals, the bottleneck rank, hops, collective calls), as data and as a readable table.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist {

// The cost of one step. A broadcast plan over 65,536 ranks has thousands of steps, each naming a few ranks,
// so per-rank figures are kept for the ranks the step names only: a dense vector per step would take
// steps x ranks memory.
struct step_cost {
  std::string kind;  // "broadcast", "gather", "scatter" or "all_to_all"
  std::size_t stage = 0;
  std::vector<int> ranks;                     // every rank the step names, ascending
  std::vector<std::uint64_t> sent, received;  // bytes, per entry of `ranks`
  std::uint64_t wire_bytes = 0;
  std::size_t collective_calls = 1;
  // The rank with the most bytes sent + received in this step, lowest on a tie; -1 if none moves any.
  int bottleneck_rank = -1;
  std::uint64_t bottleneck_bytes = 0;

  // Bytes `rank` sends / receives in this step (0 when the step does not name it).
  std::uint64_t sent_by(int rank) const noexcept { return at(sent, rank); }
  std::uint64_t received_by(int rank) const noexcept { return at(received, rank); }

 private:
  std::uint64_t at(const std::vector<std::uint64_t>& v, int rank) const noexcept {
    const auto it = std::lower_bound(ranks.begin(), ranks.end(), rank);
    return it != ranks.end() && *it == rank ? v[static_cast<std::size_t>(it - ranks.begin())] : 0;
  }
};

struct plan_cost {
  std::vector<step_cost> steps;  // in plan order
  std::uint64_t wire_bytes = 0;
  std::vector<std::uint64_t> sent, received;  // per rank of the plan, summed over steps
  int bottleneck_rank = -1;                   // max over ranks of sent + received, lowest rank on a tie
  std::uint64_t bottleneck_bytes = 0;
  int hops = 0;  // the longest chain of transfers any delivered (rank, id, key) went through
  std::size_t collective_calls = 0;
};

// Bytes that cross the wire from src to dst over the whole plan.
struct traffic_entry {
  int src = 0;
  int dst = 0;
  std::uint64_t bytes = 0;
  friend bool operator==(const traffic_entry&, const traffic_entry&) = default;
};

namespace detail {

struct transfer {
  int src;
  int dst;
  std::uint64_t bytes;
};

inline const char* step_kind(const step& s) noexcept {
  constexpr const char* names[] = {"broadcast", "gather", "scatter", "all_to_all"};
  return names[s.index()];
}

// Resolves ids to tracker positions. Plans list ids mostly in ascending runs, so the position after the last
// one found is tried before a binary search: walking a sorted list costs a comparison per id.
class id_finder {
 public:
  explicit id_finder(std::span<const sample_id> ids) : ids_(ids) {}
  std::optional<std::size_t> operator()(sample_id id) noexcept {
    if (next_ < ids_.size() && ids_[next_] == id) return next_++;
    const auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
    if (it == ids_.end() || *it != id) return std::nullopt;
    next_ = static_cast<std::size_t>(it - ids_.begin()) + 1;
    return next_ - 1;
  }

 private:
  std::span<const sample_id> ids_;
  std::size_t next_ = 0;
};

// Walks a plan step by step with tracker positions resolved, failing on anything the plan names that the
// tracker does not know: a cost of a malformed plan would be a made-up number.
class plan_walker {
 public:
  plan_walker(const char* who, const plan& p, const storage_tracker& t)
      : who_(who), p_(p), t_(t), find_(t.ids()) {
    if (p.ranks != t.ranks()) fail(who, ": the plan is for ", p.ranks, " ranks, the tracker has ", t.ranks());
  }

  const storage_tracker& tracker() const noexcept { return t_; }

  // f(stage, index in stage, step) for every step in plan order; errors meanwhile name that step.
  template <class F>
  void each_step(F&& f) {
    for (stage_ = 0; stage_ < p_.stages.size(); ++stage_)
      for (index_ = 0; index_ < p_.stages[stage_].size(); ++index_)
        f(stage_, index_, p_.stages[stage_][index_]);
  }

  int rank(int r) const {
    if (r < 0 || r >= p_.ranks)
      fail(who_, ": stage ", stage_, ", step ", index_, ": rank ", r, " is out of range");
    return r;
  }
  std::size_t key(const std::string& k) const {
    const auto pos = t_.find_key(k);
    if (!pos) fail(who_, ": stage ", stage_, ", step ", index_, ": unknown key '", k, "'");
    return *pos;
  }
  std::vector<std::size_t> keys(std::span<const std::string> names) const {
    std::vector<std::size_t> out;
    out.reserve(names.size());
    for (const auto& k : names) out.push_back(key(k));
    return out;
  }
  std::size_t id(sample_id i) {
    const auto pos = find_(i);
    if (!pos) fail(who_, ": stage ", stage_, ", step ", index_, ": unknown id ", i);
    return *pos;
  }
  void check_has(std::size_t i, std::size_t k) const {
    if (!t_.has(i, k))
      fail(who_, ": stage ", stage_, ", step ", index_, ": id ", t_.ids()[i], " has no key '", t_.keys()[k],
           "'");
  }

  // Bytes of `ids` for every key of `keys` (tracker positions).
  std::uint64_t bytes(const id_list& ids, std::span<const std::size_t> keys) {
    std::uint64_t sum = 0;
    for (sample_id x : ids) {
      const std::size_t i = id(x);
      for (std::size_t k : keys) {
        check_has(i, k);
        sum += t_.bytes(i, k);
      }
    }
    return sum;
  }

  // The ranks `s` names (unsorted, possibly repeated) and its transfers, self-transfers included.
  void expand(const step& s, std::vector<int>& ranks, std::vector<transfer>& out) {
    ranks.clear();
    out.clear();
    std::visit([&](const auto& x) { expand_one(x, ranks, out); }, s);
  }

 private:
  void expand_one(const broadcast_step& s, std::vector<int>& ranks, std::vector<transfer>& out) {
    const auto b = bytes(s.ids, keys(s.keys));
    ranks.push_back(rank(s.root));
    for (int d : s.dsts) {
      ranks.push_back(rank(d));
      out.push_back({s.root, d, b});
    }
  }
  void expand_one(const gather_step& s, std::vector<int>& ranks, std::vector<transfer>& out) {
    if (s.ids.size() != s.srcs.size())
      fail(who_, ": stage ", stage_, ", step ", index_, ": gather has ", s.ids.size(), " id lists for ",
           s.srcs.size(), " sources");
    const auto k = keys(s.keys);
    ranks.push_back(rank(s.root));
    for (std::size_t n = 0; n < s.srcs.size(); ++n) {
      ranks.push_back(rank(s.srcs[n]));
      out.push_back({s.srcs[n], s.root, bytes(s.ids[n], k)});
    }
  }
  void expand_one(const scatter_step& s, std::vector<int>& ranks, std::vector<transfer>& out) {
    if (s.ids.size() != s.dsts.size())
      fail(who_, ": stage ", stage_, ", step ", index_, ": scatter has ", s.ids.size(), " id lists for ",
           s.dsts.size(), " destinations");
    const auto k = keys(s.keys);
    ranks.push_back(rank(s.root));
    for (std::size_t n = 0; n < s.dsts.size(); ++n) {
      ranks.push_back(rank(s.dsts[n]));
      // Replicas want equal lists and sit next to each other: comparing is cheaper than summing again.
      const std::uint64_t b = n > 0 && s.ids[n] == s.ids[n - 1] ? out.back().bytes : bytes(s.ids[n], k);
      out.push_back({s.root, s.dsts[n], b});
    }
  }
  void expand_one(const all_to_all_step& s, std::vector<int>& ranks, std::vector<transfer>& out) {
    const auto k = keys(s.keys);
    std::vector<std::uint64_t> payload_bytes(s.payloads.size());
    for (std::size_t n = 0; n < s.payloads.size(); ++n) {
      const auto& pl = s.payloads[n];
      if (pl.key >= k.size())
        fail(who_, ": stage ", stage_, ", step ", index_, ": payload ", n, " names key ", pl.key, " of ",
             k.size());
      payload_bytes[n] = bytes(pl.ids, std::span<const std::size_t>(&k[pl.key], 1));
    }
    out.reserve(s.routes.size());
    for (const auto& r : s.routes) {
      if (r.payload >= s.payloads.size())
        fail(who_, ": stage ", stage_, ", step ", index_, ": route to rank ", r.dst, " names payload ",
             r.payload, " of ", s.payloads.size());
      if (s.payloads[r.payload].src != r.src)
        fail(who_, ": stage ", stage_, ", step ", index_, ": route from rank ", r.src, " uses payload ",
             r.payload, " of rank ", s.payloads[r.payload].src);
      ranks.push_back(rank(r.src));
      ranks.push_back(rank(r.dst));
      out.push_back({r.src, r.dst, payload_bytes[r.payload]});
    }
  }

  const char* who_;
  const plan& p_;
  const storage_tracker& t_;
  id_finder find_;
  std::size_t stage_ = 0, index_ = 0;
};

// The longest chain of transfers behind any delivery. Initial holdings have depth 0; a delivery gets its
// source's depth + 1; steps of one stage read depths as they were when the stage started.
//
// Depths are kept only where they can matter: for (rank, id, key) that the rank sends in a later stage, and
// whose key some earlier stage delivered. In a one-stage plan nothing is kept and the walk is linear in
// the number of routes, not in the number of delivered samples.
class hop_counter {
 public:
  explicit hop_counter(plan_walker& w) : w_(w), t_(w.tracker()) {}

  int run(const plan& p) {
    const std::size_t nkeys = t_.keys().size();
    entries_ = static_cast<std::uint64_t>(t_.ids().size()) * nkeys;
    // 1. The first stage that delivers each key anywhere.
    std::vector<std::size_t> first(nkeys, npos);
    units([&](std::size_t stage, int, std::span<const int>, auto&&, std::span<const std::size_t> keys, bool) {
      for (std::size_t k : keys) first[k] = std::min(first[k], stage);
    });
    // 2. The (rank, entry) pairs whose depth may exceed 0 when they are sent.
    const auto ranks = static_cast<std::size_t>(p.ranks);
    last_send_.assign(ranks, npos);
    std::vector<std::size_t> ids;
    units([&](std::size_t stage, int src, std::span<const int>, auto&& resolve,
              std::span<const std::size_t> keys, bool repeat) {
      if (repeat) return;
      bool any = false;
      for (std::size_t k : keys) any = any || first[k] < stage;
      if (!any) return;
      resolve(ids);
      for (std::size_t k : keys)
        if (first[k] < stage)
          for (std::size_t i : ids) codes_.push_back(code(src, i * nkeys + k));
      auto& last = last_send_[static_cast<std::size_t>(src)];
      last = last == npos ? stage : std::max(last, stage);
    });
    std::sort(codes_.begin(), codes_.end());
    codes_.erase(std::unique(codes_.begin(), codes_.end()), codes_.end());
    depth_.resize(codes_.size());
    for (std::size_t n = 0; n < codes_.size(); ++n) {
      const std::uint64_t e = codes_[n] % entries_;
      const int r = static_cast<int>(codes_[n] / entries_);
      depth_[n] =
          t_.holds(r, static_cast<std::size_t>(e / nkeys), static_cast<std::size_t>(e % nkeys)) ? 0 : unset;
    }
    // 3. Deliveries, stage by stage.
    int hops = 0;
    std::size_t current = 0;
    std::vector<std::pair<std::size_t, std::uint32_t>> arriving;
    auto settle = [&] {
      for (const auto& [n, d] : arriving) depth_[n] = std::min(depth_[n], d);
      arriving.clear();
    };
    units([&](std::size_t stage, int src, std::span<const int> dsts, auto&& resolve,
              std::span<const std::size_t> keys, bool repeat) {
      if (stage != current) {
        settle();
        current = stage;
      }
      const bool deep = last_send_[static_cast<std::size_t>(src)] != npos && stage > 0;
      bool record = false;
      for (int d : dsts) record = record || later(d, stage);
      if (!deep && !record) {  // every depth here is 1
        hops = std::max(hops, 1);
        return;
      }
      if (repeat && !record) return;  // the same depths as the previous group's
      resolve(ids);
      for (std::size_t k : keys)
        for (std::size_t i : ids) {
          const std::uint64_t e = i * nkeys + k;
          std::uint32_t d = 0;
          if (deep) {
            const auto n = find(code(src, e));
            if (n != npos && depth_[n] != unset) d = depth_[n];
          }
          hops = std::max(hops, static_cast<int>(d) + 1);
          if (record)
            for (int dst : dsts)
              if (later(dst, stage))
                if (const auto n = find(code(dst, e)); n != npos) arriving.emplace_back(n, d + 1);
        }
    });
    return hops;
  }

 private:
  static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();
  static constexpr std::uint32_t unset = std::numeric_limits<std::uint32_t>::max();

  // Plans name far fewer than 2^64 / (ranks x ids x keys) things, so the product does not overflow.
  std::uint64_t code(int rank, std::uint64_t entry) const noexcept {
    return static_cast<std::uint64_t>(rank) * entries_ + entry;
  }
  std::size_t find(std::uint64_t c) const noexcept {
    const auto it = std::lower_bound(codes_.begin(), codes_.end(), c);
    return it != codes_.end() && *it == c ? static_cast<std::size_t>(it - codes_.begin()) : npos;
  }
  // Whether `rank` sends something in a stage after `stage`, so what it receives now must be remembered.
  bool later(int rank, std::size_t stage) const noexcept {
    const auto last = last_send_[static_cast<std::size_t>(rank)];
    return last != npos && last > stage;
  }

  // f(stage, src, dsts, resolve, keys, repeat) for every group of transfers that send the same ids and keys
  // from one source; self-transfers are left out, and groups left with no destination or no id are skipped.
  // resolve(out) fills `out` with the group's tracker id positions, on demand: most groups never need them.
  // `repeat`: the previous group of this stage sent the same ids and keys from the same source (the replicas
  // of a scatter), so what depends only on those is known already.
  template <class F>
  void units(F&& f) {
    std::vector<int> dsts;
    std::vector<std::size_t> keys, last_keys;
    const id_list* last_ids = nullptr;
    int last_src = -1;
    std::size_t last_stage = npos;
    w_.each_step([&](std::size_t stage, std::size_t, const step& s) {
      auto emit = [&](int src, const id_list& ids, std::span<const int> to, std::span<const std::size_t> k) {
        dsts.clear();
        for (int d : to)
          if (d != src) dsts.push_back(d);
        if (dsts.empty() || ids.empty() || k.empty()) return;
        auto resolve = [&](std::vector<std::size_t>& out) {
          out.clear();
          for (sample_id x : ids) out.push_back(w_.id(x));
        };
        const bool repeat = stage == last_stage && src == last_src &&
                            std::equal(k.begin(), k.end(), last_keys.begin(), last_keys.end()) &&
                            (last_ids == &ids || *last_ids == ids);
        f(stage, src, std::span<const int>(dsts), resolve, k, repeat);
        last_stage = stage;
        last_src = src;
        last_ids = &ids;
        last_keys.assign(k.begin(), k.end());
      };
      std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, all_to_all_step>) {
              // Routes grouped by payload: one group per payload with every destination it reaches.
              std::vector<std::size_t> begin(x.payloads.size() + 1, 0);
              for (const auto& r : x.routes) ++begin[r.payload + 1];
              for (std::size_t n = 1; n < begin.size(); ++n) begin[n] += begin[n - 1];
              std::vector<int> to(x.routes.size());
              std::vector<std::size_t> fill(begin.begin(), begin.end() - 1);
              for (const auto& r : x.routes) to[fill[r.payload]++] = r.dst;
              keys = w_.keys(x.keys);
              for (std::size_t n = 0; n < x.payloads.size(); ++n) {
                const auto& pl = x.payloads[n];
                emit(pl.src, pl.ids, std::span<const int>(to.data() + begin[n], begin[n + 1] - begin[n]),
                     std::span<const std::size_t>(&keys[pl.key], 1));
              }
            } else {
              keys = w_.keys(x.keys);
              if constexpr (std::is_same_v<T, broadcast_step>) {
                emit(x.root, x.ids, x.dsts, keys);
              } else if constexpr (std::is_same_v<T, gather_step>) {
                for (std::size_t n = 0; n < x.srcs.size(); ++n) emit(x.srcs[n], x.ids[n], {&x.root, 1}, keys);
              } else {
                for (std::size_t n = 0; n < x.dsts.size(); ++n) emit(x.root, x.ids[n], {&x.dsts[n], 1}, keys);
              }
            }
          },
          s);
    });
  }

  plan_walker& w_;
  const storage_tracker& t_;
  std::uint64_t entries_ = 0;
  std::vector<std::size_t> last_send_;  // per rank: the last stage it sends a kept pair in, or npos
  std::vector<std::uint64_t> codes_;    // kept (rank, entry) pairs, ascending
  std::vector<std::uint32_t> depth_;    // per kept pair; unset until delivered (or held from the start)
};

inline std::string human_bytes(std::uint64_t b) {
  if (b < 1024) return std::to_string(b) + " B";
  constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(b) / 1024.0;
  std::size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(units)) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

}  // namespace detail

// Bytes of (id, key) are tracker.bytes(). A transfer from a rank to itself costs nothing and is not on the
// wire. The model is flat: a broadcast costs root -> each destination (as if sent point to point, whatever
// tree the library underneath uses); a gather each source -> root; a scatter root -> each destination; an
// all-to-all, per route, its payload's bytes. One collective call per step. Throws redist::error when the
// plan names a rank, id or key the tracker does not know.
inline plan_cost estimate_cost(const plan& p, const storage_tracker& tracker) {
  detail::plan_walker walker("redist::estimate_cost", p, tracker);
  plan_cost cost;
  const auto ranks = static_cast<std::size_t>(p.ranks);
  cost.sent.assign(ranks, 0);
  cost.received.assign(ranks, 0);
  // Per-step sums go through dense scratch arrays; only the ranks a step names are touched and reset.
  std::vector<std::uint64_t> sent(ranks, 0), received(ranks, 0);
  std::vector<int> named;
  std::vector<detail::transfer> transfers;
  walker.each_step([&](std::size_t stage, std::size_t, const step& s) {
    walker.expand(s, named, transfers);
    step_cost sc;
    sc.kind = detail::step_kind(s);
    sc.stage = stage;
    for (const auto& t : transfers) {
      if (t.src == t.dst) continue;
      sent[static_cast<std::size_t>(t.src)] += t.bytes;
      received[static_cast<std::size_t>(t.dst)] += t.bytes;
      sc.wire_bytes += t.bytes;
    }
    std::sort(named.begin(), named.end());
    named.erase(std::unique(named.begin(), named.end()), named.end());
    sc.ranks = named;
    sc.sent.reserve(named.size());
    sc.received.reserve(named.size());
    for (int r : named) {
      const auto u = static_cast<std::size_t>(r);
      sc.sent.push_back(sent[u]);
      sc.received.push_back(received[u]);
      if (sent[u] + received[u] > sc.bottleneck_bytes) {
        sc.bottleneck_bytes = sent[u] + received[u];
        sc.bottleneck_rank = r;
      }
      cost.sent[u] += sent[u];
      cost.received[u] += received[u];
      sent[u] = received[u] = 0;
    }
    cost.wire_bytes += sc.wire_bytes;
    cost.collective_calls += sc.collective_calls;
    cost.steps.push_back(std::move(sc));
  });
  for (std::size_t r = 0; r < ranks; ++r)
    if (cost.sent[r] + cost.received[r] > cost.bottleneck_bytes) {
      cost.bottleneck_bytes = cost.sent[r] + cost.received[r];
      cost.bottleneck_rank = static_cast<int>(r);
    }
  cost.hops = detail::hop_counter(walker).run(p);
  return cost;
}

// Bytes from each rank to each other rank over the whole plan: only pairs that exchange something, src !=
// dst, ascending by (src, dst). Same model as estimate_cost.
inline std::vector<traffic_entry> traffic_matrix(const plan& p, const storage_tracker& tracker) {
  detail::plan_walker walker("redist::traffic_matrix", p, tracker);
  std::vector<traffic_entry> all;
  std::vector<int> named;
  std::vector<detail::transfer> transfers;
  walker.each_step([&](std::size_t, std::size_t, const step& s) {
    walker.expand(s, named, transfers);
    for (const auto& t : transfers)
      if (t.src != t.dst && t.bytes > 0) all.push_back({t.src, t.dst, t.bytes});
  });
  std::sort(all.begin(), all.end(), [](const traffic_entry& a, const traffic_entry& b) {
    return std::tie(a.src, a.dst) < std::tie(b.src, b.dst);
  });
  std::vector<traffic_entry> out;
  for (const auto& e : all) {
    if (!out.empty() && out.back().src == e.src && out.back().dst == e.dst) {
      out.back().bytes += e.bytes;
    } else {
      out.push_back(e);
    }
  }
  return out;
}

// A table: one line per step (stage, kind, ranks, keys, ids, wire bytes, the step's busiest rank), then the
// totals. A plan of more than 64 steps is summarized: the first steps, then one line per kind of step.
inline std::string describe(const plan& p, const storage_tracker& tracker) {
  const plan_cost cost = estimate_cost(p, tracker);
  auto ids_of = [](const step& s) {
    return std::visit(
        [](const auto& x) -> std::size_t {
          using T = std::decay_t<decltype(x)>;
          std::size_t n = 0;
          if constexpr (std::is_same_v<T, broadcast_step>) {
            n = x.ids.size();
          } else if constexpr (std::is_same_v<T, all_to_all_step>) {
            for (const auto& pl : x.payloads) n += pl.ids.size();
          } else {
            for (const auto& l : x.ids) n += l.size();
          }
          return n;
        },
        s);
  };
  auto keys_of = [](const step& s) {
    const auto& keys = std::visit([](const auto& x) -> const std::vector<std::string>& { return x.keys; }, s);
    std::string out;
    for (const auto& k : keys) out += (out.empty() ? "" : ",") + k;
    if (out.size() > 24) out = out.substr(0, 21) + "...";
    return out;
  };
  auto cell = [](std::string s, std::size_t width) {
    if (s.size() < width) s.insert(0, width - s.size(), ' ');
    return s;
  };
  auto left = [](std::string s, std::size_t width) {
    if (s.size() < width) s.append(width - s.size(), ' ');
    return s;
  };

  std::ostringstream os;
  auto plural = [](std::size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  os << "plan over " << plural(static_cast<std::size_t>(p.ranks), "rank") << ": "
     << plural(cost.steps.size(), "step") << " in " << plural(p.stages.size(), "stage") << "\n";
  constexpr std::size_t limit = 64, shown = 16;
  const bool summarize = cost.steps.size() > limit;
  if (!cost.steps.empty()) {
    os << cell("stage", 6) << "  " << left("kind", 10) << cell("ranks", 7) << "  " << left("keys", 24)
       << cell("ids", 9) << cell("wire", 13) << cell("max rank", 13) << "  (rank)\n";
    std::size_t n = 0;
    for (const auto& stage : p.stages)
      for (const auto& s : stage) {
        const step_cost& c = cost.steps[n++];
        if (summarize && n > shown) continue;
        os << cell(std::to_string(c.stage), 6) << "  " << left(c.kind, 10)
           << cell(std::to_string(c.ranks.size()), 7) << "  " << left(keys_of(s), 24)
           << cell(std::to_string(ids_of(s)), 9) << cell(detail::human_bytes(c.wire_bytes), 13)
           << cell(detail::human_bytes(c.bottleneck_bytes), 13) << "  (" << c.bottleneck_rank << ")\n";
      }
  }
  if (summarize) {
    os << "  ... " << cost.steps.size() - shown << " more steps; by kind:\n";
    for (const char* kind : {"broadcast", "gather", "scatter", "all_to_all"}) {
      std::size_t count = 0;
      std::uint64_t wire = 0, heaviest = 0;
      for (const auto& c : cost.steps)
        if (c.kind == kind) {
          ++count;
          wire += c.wire_bytes;
          heaviest = std::max(heaviest, c.wire_bytes);
        }
      if (count > 0)
        os << "  " << left(kind, 10) << " " << count << " steps, wire " << detail::human_bytes(wire)
           << ", heaviest step " << detail::human_bytes(heaviest) << "\n";
    }
  }
  auto exact = [](std::uint64_t b) {
    return detail::human_bytes(b) + (b < 1024 ? std::string() : " (" + std::to_string(b) + " B)");
  };
  os << "totals: wire " << exact(cost.wire_bytes) << ", bottleneck rank " << cost.bottleneck_rank << " "
     << exact(cost.bottleneck_bytes) << ", hops " << cost.hops << ", collective calls "
     << cost.collective_calls << "\n";
  return os.str();
}

}  // namespace redist
