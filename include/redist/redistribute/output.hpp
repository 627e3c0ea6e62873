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

// The one-call result: `ids` with `keys`, seqlens from the catalog, each key's tensor allocated once, or
// taken from `reuse` (and `reused` set) when it has that layout already: these ids in this order, these keys
// in this order with their dtypes, trailing shapes and every sample's seqlens (a valid batch's tensors then
// have the shapes). Per-sample metadata: a name comes along when every rank that holds samples has it (a rank
// holding none has no say), each value from the lowest rank holding the id.
template <class Tensor>
sequence_batch<Tensor> make_output(const catalog& cat, const std::vector<sample_id>& ids,
                                   const std::vector<std::string>& keys,
                                   const std::vector<sequence_batch<host_tensor>>& metas,
                                   sequence_batch<Tensor>* reuse, bool& reused) {
  std::vector<typename sequence_batch<Tensor>::field> fields;
  std::vector<std::int64_t> tokens;
  for (const auto& name : keys) {
    const std::size_t k = *cat.find_key(name);
    const auto& schema = cat.keys()[k];
    seqlen_table lens;
    std::int64_t total = 0;
    for (sample_id id : ids) {
      lens.push_back(cat.seqlens(id, k));
      total += cat.tokens(id, k);
    }
    fields.push_back({name, schema.dtype, schema.trailing_shape, std::move(lens), std::nullopt});
    tokens.push_back(total);
  }
  reused = reuse != nullptr && reuse->has_data() &&
           std::equal(reuse->ids().begin(), reuse->ids().end(), ids.begin(), ids.end()) &&
           std::equal(reuse->fields().begin(), reuse->fields().end(), fields.begin(), fields.end(),
                      [](const auto& have, const auto& want) {
                        return have.name == want.name && have.dtype == want.dtype &&
                               have.trailing_shape == want.trailing_shape && have.seqlens == want.seqlens;
                      });
  for (std::size_t f = 0; f < fields.size(); ++f) {
    auto& field = fields[f];
    std::vector<std::int64_t> shape{tokens[f]};
    shape.insert(shape.end(), field.trailing_shape.begin(), field.trailing_shape.end());
    field.data =
        reused ? std::move(reuse->data(field.name)) : tensor_traits<Tensor>::allocate(field.dtype, shape);
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
