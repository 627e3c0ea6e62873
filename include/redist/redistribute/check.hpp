// The checks redistribute() makes on each rank before any byte moves: whether this rank's share of a plan is
// sound against its store and the catalog.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "redist/core/catalog.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/options.hpp"
#include "redist/plan/steps.hpp"
#include "redist/staging/float32_staging.hpp"

namespace redist::detail {

// This rank's share of the checks made before any byte moves: the plan fits the communicator, every key and
// id it names is in the catalog, this rank holds what it sends, nothing reaches it twice in one step, and
// every value it sends survives the staging (unless the caller allows loss). Device values are checked by
// `space` once the rest has passed, all in one table (one launch).
template <class Staging, class Tensor, class Space>
void check_before_transfer(int me, int size, const sample_store<Tensor>& store, const plan& p,
                           const catalog& cat, const redistribute_options& opts, const Space& space) {
  if (p.ranks != size)
    fail("redist::redistribute: the plan is for ", p.ranks, " ranks, the communicator has ", size);
  // (id, key) pairs this rank receives in earlier stages: it may relay them later (gather, then scatter).
  std::vector<std::pair<sample_id, std::size_t>> relayed;
  // Device values to check for loss, and whose they are.
  std::vector<cast_piece> device_checks;
  std::vector<std::pair<sample_id, std::size_t>> device_owners;
  const auto lossy = [&](std::size_t bad, sample_id id, std::size_t k) {
    fail("redist::redistribute: ", Staging::label, " would change element ", bad, " of id ", id, ", key '",
         cat.keys()[k].name, "' (", name(cat.keys()[k].dtype), ") on rank ", me,
         "; use byte_staging or set allow_lossy");
  };
  for (std::size_t s = 0; s < p.stages.size(); ++s) {
    std::vector<std::pair<sample_id, std::size_t>> arriving;
    for (std::size_t n = 0; n < p.stages[s].size(); ++n) {
      const step& st = p.stages[s][n];
      std::vector<std::size_t> keys;
      for (const auto& k : keys_of(st)) {
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
        if constexpr (tensor_space<Tensor> == memory_space::host) {
          const std::size_t bad = Staging::first_lossy(key.dtype, bytes, count);
          if (bad != count) lossy(bad, id, k);
        } else {
          static_assert(std::is_same_v<Staging, float32_staging> || Staging::lossless,
                        "redist::redistribute: a lossy staging on device tensors must be float32_staging, "
                        "whose loss check the memory space runs");
          device_checks.push_back({bytes, nullptr, 0, count, 0, key.dtype});
          device_owners.emplace_back(id, k);
        }
      };
      const auto step_begin = static_cast<std::ptrdiff_t>(arriving.size());
      auto check_receive = [&](sample_id id, std::size_t k) {
        if (!cat.has(id, k))
          fail("redist::redistribute: id ", id, ", key '", cat.keys()[k].name,
               "' is in the plan but no rank holds it");
        arriving.emplace_back(id, k);
      };
      std::vector<char> checked;  // per id list: this rank's sends of it checked already
      for_each_transfer(
          st,
          [&](const step_transfer& t) {
            if (t.src == t.dst) return;
            const auto each = [&](auto&& f) {
              for (sample_id id : *t.ids)
                for (std::uint32_t k = t.first_key; k < t.first_key + t.key_count; ++k) f(id, keys[k]);
            };
            if (t.src == me) {
              if (t.list >= checked.size()) checked.resize(t.list + 1, 0);
              if (!checked[t.list]) each(check_send);
              checked[t.list] = 1;
            }
            if (t.dst == me) each(check_receive);
          },
          [&](const std::string& defect) {
            fail("redist::redistribute: stage ", s, " step ", n, ": ", defect);
          });
      std::sort(arriving.begin() + step_begin, arriving.end());
      const auto twice = std::adjacent_find(arriving.begin() + step_begin, arriving.end());
      if (twice != arriving.end())
        fail("redist::redistribute: stage ", s, " step ", n, " delivers id ", twice->first, ", key '",
             cat.keys()[twice->second].name, "' to rank ", me, " twice");
    }
    relayed.insert(relayed.end(), arriving.begin(), arriving.end());
    std::sort(relayed.begin(), relayed.end());
  }
  if (device_checks.empty()) return;
  const std::size_t at = space.first_lossy_piece(device_checks);
  if (at == device_checks.size()) return;
  // The exact element, found on the host in a copy of that sample's values.
  const cast_piece& piece = device_checks[at];
  std::vector<std::byte> values(piece.count * size_of(piece.type));
  space.to_host(values.data(), piece.src, values.size());
  lossy(Staging::first_lossy(piece.type, values.data(), piece.count), device_owners[at].first,
        device_owners[at].second);
}

}  // namespace redist::detail
