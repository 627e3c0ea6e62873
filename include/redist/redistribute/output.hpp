// The one-call form's result: its layout, made, or taken from a reused batch that has it already, and given
// back after a failed call.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "redist/core/catalog.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/core/tensor_traits.hpp"

namespace redist::detail {

// Whether `b` already has the one-call result's layout: `ids` in this order, `keys` in this order with their
// dtypes and trailing shapes, every sample's seqlens as the catalog has them, and tensors of those shapes.
template <class Tensor>
bool has_layout(const sequence_batch<Tensor>& b, const catalog& cat, const std::vector<sample_id>& ids,
                const std::vector<std::string>& keys) {
  if (!b.has_data() || !std::equal(b.ids().begin(), b.ids().end(), ids.begin(), ids.end()) ||
      b.fields().size() != keys.size())
    return false;
  for (std::size_t f = 0; f < keys.size(); ++f) {
    const auto& field = b.fields()[f];
    const std::size_t k = *cat.find_key(keys[f]);
    const auto& schema = cat.keys()[k];
    if (field.name != keys[f] || field.dtype != schema.dtype || field.trailing_shape != schema.trailing_shape)
      return false;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto want = cat.seqlens(ids[i], k);
      const auto have = field.seqlens[i];
      if (!std::equal(have.begin(), have.end(), want.begin(), want.end())) return false;
    }
  }
  return true;  // the batch is valid, so its tensors' shapes follow from the seqlens
}

// The one-call form's result: `ids` with `keys`, seqlens from the catalog, each key's tensor allocated once,
// or taken from `reuse` (and `reused` set) when it has that layout already. Per-sample metadata: a name comes
// along when every rank that holds samples has it (a rank holding none has no say), each value from the
// lowest rank holding the id.
template <class Tensor>
sequence_batch<Tensor> make_output(const catalog& cat, const std::vector<sample_id>& ids,
                                   const std::vector<std::string>& keys,
                                   const std::vector<sequence_batch<host_tensor>>& metas,
                                   sequence_batch<Tensor>* reuse, bool& reused) {
  reused = reuse != nullptr && has_layout(*reuse, cat, ids, keys);
  std::vector<typename sequence_batch<Tensor>::field> fields;
  for (const auto& name : keys) {
    const std::size_t k = *cat.find_key(name);
    const auto& schema = cat.keys()[k];
    seqlen_table lens;
    std::int64_t tokens = 0;
    for (sample_id id : ids) {
      lens.push_back(cat.seqlens(id, k));
      tokens += cat.tokens(id, k);
    }
    std::vector<std::int64_t> shape{tokens};
    shape.insert(shape.end(), schema.trailing_shape.begin(), schema.trailing_shape.end());
    fields.push_back(
        {name, schema.dtype, schema.trailing_shape, std::move(lens),
         reused ? std::move(reuse->data(name)) : tensor_traits<Tensor>::allocate(schema.dtype, shape)});
  }
  metadata_map metadata;
  const auto holder = std::find_if(metas.begin(), metas.end(), [](const auto& m) { return m.size() != 0; });
  if (holder != metas.end()) {
    for (const auto& [name, values] : holder->metadata()) {
      const bool everywhere = std::all_of(metas.begin(), metas.end(), [&n = name](const auto& m) {
        return m.size() == 0 || m.metadata().count(n) != 0;
      });
      if (!everywhere) continue;
      auto& column = metadata[name];
      for (sample_id id : ids)
        for (const auto& m : metas)
          if (const auto pos = m.find(id)) {
            column.push_back(m.metadata().find(name)->second[*pos]);
            break;
          }
    }
  }
  return sequence_batch<Tensor>(ids, std::move(fields), std::move(metadata));
}

// Gives a reused output its tensors back, with its old metadata, after a failed call.
template <class Tensor>
void give_back(sequence_batch<Tensor>& result, sequence_batch<Tensor>& out, metadata_map old_metadata) {
  std::vector<typename sequence_batch<Tensor>::field> fields;
  for (const auto& f : result.fields())
    fields.push_back({f.name, f.dtype, f.trailing_shape, f.seqlens, std::move(result.data(f.name))});
  out = sequence_batch<Tensor>(std::vector<sample_id>(result.ids().begin(), result.ids().end()),
                               std::move(fields), std::move(old_metadata));
}

}  // namespace redist::detail
