// The checks redistribute() makes on each rank before any byte moves: what a step sends and receives on this
// rank, and whether this rank's share of a plan is sound against its store and the catalog.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "redist/core/catalog.hpp"
#include "redist/core/error.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/options.hpp"
#include "redist/plan/steps.hpp"

namespace redist::detail {

// What this rank sends and receives in a step, as (peer, ids, key names) triples.
struct step_io {
  std::vector<std::pair<int, const id_list*>> sends, receives;
  const std::vector<std::string>* keys = nullptr;
  std::vector<std::pair<const id_list*, std::uint32_t>> payload_sends,
      payload_receives;  // all-to-all: key index
};

inline step_io io_of(const step& s, int me) {
  step_io io;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        io.keys = &x.keys;
        if constexpr (std::is_same_v<T, broadcast_step>) {
          for (int d : x.dsts) {
            if (x.root == me) io.sends.emplace_back(d, &x.ids);
            if (d == me) io.receives.emplace_back(x.root, &x.ids);
          }
        } else if constexpr (std::is_same_v<T, gather_step>) {
          for (std::size_t i = 0; i < x.srcs.size() && i < x.ids.size(); ++i) {
            if (x.srcs[i] == x.root) continue;
            if (x.srcs[i] == me) io.sends.emplace_back(x.root, &x.ids[i]);
            if (x.root == me) io.receives.emplace_back(x.srcs[i], &x.ids[i]);
          }
        } else if constexpr (std::is_same_v<T, scatter_step>) {
          for (std::size_t i = 0; i < x.dsts.size() && i < x.ids.size(); ++i) {
            if (x.dsts[i] == x.root) continue;
            if (x.root == me) io.sends.emplace_back(x.dsts[i], &x.ids[i]);
            if (x.dsts[i] == me) io.receives.emplace_back(x.root, &x.ids[i]);
          }
        } else {
          for (const auto& r : x.routes) {
            if (r.payload >= x.payloads.size())
              fail("redist::redistribute: a route names payload ", r.payload, " of ", x.payloads.size());
            const auto& q = x.payloads[r.payload];
            if (q.key >= x.keys.size())
              fail("redist::redistribute: a payload names key ", q.key, " of ", x.keys.size());
            if (r.src == me) io.payload_sends.emplace_back(&q.ids, q.key);
            if (r.dst == me) io.payload_receives.emplace_back(&q.ids, q.key);
          }
        }
      },
      s);
  return io;
}

// This rank's share of the checks made before any byte moves: the plan fits the communicator, every key and
// id it names is in the catalog, this rank holds what it sends, nothing reaches it twice in one step, and
// every value it sends survives the staging (unless the caller allows loss).
template <class Staging, class Tensor>
void check_before_transfer(int me, int size, const sample_store<Tensor>& store, const plan& p,
                           const catalog& cat, const redistribute_options& opts) {
  if (p.ranks != size)
    fail("redist::redistribute: the plan is for ", p.ranks, " ranks, the communicator has ", size);
  // (id, key) pairs this rank receives in earlier stages: it may relay them later (gather, then scatter).
  std::vector<std::pair<sample_id, std::size_t>> relayed;
  for (std::size_t s = 0; s < p.stages.size(); ++s) {
    std::vector<std::pair<sample_id, std::size_t>> arriving;
    for (std::size_t n = 0; n < p.stages[s].size(); ++n) {
      const auto io = io_of(p.stages[s][n], me);
      std::vector<std::size_t> keys;
      for (const auto& k : *io.keys) {
        const auto kp = cat.find_key(k);
        if (!kp)
          fail("redist::redistribute: stage ", s, " step ", n, " names key '", k, "', which no rank holds");
        keys.push_back(*kp);
      }
      auto check_send = [&](sample_id id, std::size_t k) {
        const auto& key = cat.keys()[k];
        if (!cat.has(id, k))
          fail("redist::redistribute: id ", id, ", key '", key.name, "' is in the plan but no rank holds it");
        const auto loc = store.find(id, key.name);
        if (!loc && std::binary_search(relayed.begin(), relayed.end(), std::pair{id, k})) return;
        if (!loc)
          fail("redist::redistribute: rank ", me, " must send id ", id, ", key '", key.name,
               "', which it does not hold");
        if (!loc->batch->has_data())
          fail("redist::redistribute: rank ", me, " must send id ", id, ", key '", key.name,
               "', but its batch holds metadata only, no tensors");
        if (opts.allow_lossy || Staging::lossless) return;
        const auto& t = loc->batch->data(key.name);
        const auto range = loc->batch->sample_bytes(key.name, loc->position);
        const auto* bytes = static_cast<const std::byte*>(tensor_traits<Tensor>::data(t)) + range.offset;
        const std::size_t count = range.size / size_of(key.dtype);
        const std::size_t bad = Staging::first_lossy(key.dtype, bytes, count);
        if (bad != count)
          fail("redist::redistribute: ", Staging::label, " would change element ", bad, " of id ", id,
               ", key '", key.name, "' (", name(key.dtype), ") on rank ", me,
               "; use byte_staging or set allow_lossy");
      };
      const auto step_begin = static_cast<std::ptrdiff_t>(arriving.size());
      auto check_receive = [&](sample_id id, std::size_t k) {
        if (!cat.has(id, k))
          fail("redist::redistribute: id ", id, ", key '", cat.keys()[k].name,
               "' is in the plan but no rank holds it");
        arriving.emplace_back(id, k);
      };
      for (const auto& [peer, ids] : io.sends)
        for (sample_id id : *ids)
          for (auto k : keys) check_send(id, k);
      for (const auto& [ids, k] : io.payload_sends)
        for (sample_id id : *ids) check_send(id, keys[k]);
      for (const auto& [peer, ids] : io.receives)
        for (sample_id id : *ids)
          for (auto k : keys) check_receive(id, k);
      for (const auto& [ids, k] : io.payload_receives)
        for (sample_id id : *ids) check_receive(id, keys[k]);
      std::sort(arriving.begin() + step_begin, arriving.end());
      const auto twice = std::adjacent_find(arriving.begin() + step_begin, arriving.end());
      if (twice != arriving.end())
        fail("redist::redistribute: stage ", s, " step ", n, " delivers id ", twice->first, ", key '",
             cat.keys()[twice->second].name, "' to rank ", me, " twice");
    }
    relayed.insert(relayed.end(), arriving.begin(), arriving.end());
    std::sort(relayed.begin(), relayed.end());
  }
}

}  // namespace redist::detail
