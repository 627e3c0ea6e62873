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

// The metadata names that come along with a one-call result: those every rank that holds samples has (a rank
// holding none has no say), f(name) for each, in the lowest holder's order.
template <class F>
void for_each_result_name(const std::vector<sequence_batch<host_tensor>>& metas, F&& f) {
  const auto holder = std::find_if(metas.begin(), metas.end(), [](const auto& m) { return m.size() != 0; });
  if (holder == metas.end()) return;
  for (const auto& [name, values] : holder->metadata()) {
    const bool everywhere = std::all_of(metas.begin(), metas.end(), [&n = name](const auto& m) {
      return m.size() == 0 || m.metadata().count(n) != 0;
    });
    if (everywhere) f(name);
  }
}

// An id's value of a metadata name in the result: the lowest rank holding the id has it.
inline const std::string& result_value(const std::vector<sequence_batch<host_tensor>>& metas,
                                       const std::string& name, sample_id id) {
  for (const auto& m : metas)
    if (const auto pos = m.find(id)) return m.metadata().find(name)->second[*pos];
  fail("redist::redistribute: no rank holds id ", id);
}

// Whether `b` has the one-call result's layout: these ids in this order, these keys in this order with their
// dtypes, trailing shapes and every sample's seqlens, its tensors present (a valid batch's tensors then have
// the shapes). Allocates nothing.
template <class Tensor>
bool has_result_layout(const sequence_batch<Tensor>& b, const catalog& cat, const std::vector<sample_id>& ids,
                       const std::vector<std::string>& keys) {
  if (!b.has_data() || !std::equal(b.ids().begin(), b.ids().end(), ids.begin(), ids.end()) ||
      b.fields().size() != keys.size())
    return false;
  for (std::size_t f = 0; f < keys.size(); ++f) {
    const auto& have = b.fields()[f];
    const std::size_t k = *cat.find_key(keys[f]);
    const auto& schema = cat.keys()[k];
    if (have.name != keys[f] || have.dtype != schema.dtype || have.trailing_shape != schema.trailing_shape)
      return false;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto want = cat.seqlens(ids[i], k);
      const auto got = have.seqlens[i];
      if (!std::equal(got.begin(), got.end(), want.begin(), want.end())) return false;
    }
  }
  return true;
}

// Whether `b` (of the result's ids) carries the metadata the result would. Allocates nothing.
template <class Tensor>
bool has_result_metadata(const sequence_batch<Tensor>& b,
                         const std::vector<sequence_batch<host_tensor>>& metas,
                         const std::vector<sample_id>& ids) {
  std::size_t names = 0;
  bool same = true;
  for_each_result_name(metas, [&](const std::string& name) {
    ++names;
    const auto column = b.metadata().find(name);
    same = same && column != b.metadata().end();
    for (std::size_t i = 0; i < ids.size() && same; ++i)
      same = column->second[i] == result_value(metas, name, ids[i]);
  });
  return same && names == b.metadata().size();
}

// What make_output() took of the batch it was given to reuse.
enum class reuse_taken { nothing, tensors, all };

// The one-call result: `ids` with `keys`, seqlens from the catalog, per-sample metadata as
// for_each_result_name() says, each key's tensor allocated once. When `reuse` has the result's layout, its
// tensors are taken: all of reuse, with nothing allocated, when its metadata is the result's too.
template <class Tensor>
sequence_batch<Tensor> make_output(const catalog& cat, const std::vector<sample_id>& ids,
                                   const std::vector<std::string>& keys,
                                   const std::vector<sequence_batch<host_tensor>>& metas,
                                   sequence_batch<Tensor>* reuse, reuse_taken& taken) {
  taken = reuse_taken::nothing;
  if (reuse != nullptr && has_result_layout(*reuse, cat, ids, keys)) {
    taken = reuse_taken::all;
    if (has_result_metadata(*reuse, metas, ids)) return std::move(*reuse);
    taken = reuse_taken::tensors;
  }
  const bool reused = taken == reuse_taken::tensors;
  std::vector<typename sequence_batch<Tensor>::field> fields;
  for (const auto& name : keys) {
    const std::size_t k = *cat.find_key(name);
    const auto& schema = cat.keys()[k];
    seqlen_table lens;
    std::int64_t total = 0;
    for (sample_id id : ids) {
      lens.push_back(cat.seqlens(id, k));
      total += cat.tokens(id, k);
    }
    std::vector<std::int64_t> shape{total};
    shape.insert(shape.end(), schema.trailing_shape.begin(), schema.trailing_shape.end());
    fields.push_back(
        {name, schema.dtype, schema.trailing_shape, std::move(lens),
         reused ? std::move(reuse->data(name)) : tensor_traits<Tensor>::allocate(schema.dtype, shape)});
  }
  metadata_map metadata;
  for_each_result_name(metas, [&](const std::string& name) {
    auto& column = metadata[name];
    column.reserve(ids.size());
    for (sample_id id : ids) column.push_back(result_value(metas, name, id));
  });
  return sequence_batch<Tensor>(ids, std::move(fields), std::move(metadata));
}

// Gives a reused output what make_output() took of it back to it from `result`, after a failed call.
template <class Tensor>
void give_back(sequence_batch<Tensor>& result, sequence_batch<Tensor>& out, reuse_taken taken) {
  if (taken == reuse_taken::nothing) return;
  if (taken == reuse_taken::all) {
    out = std::move(result);
    return;
  }
  std::vector<typename sequence_batch<Tensor>::field> fields;
  for (const auto& f : result.fields())
    fields.push_back({f.name, f.dtype, f.trailing_shape, f.seqlens, std::move(result.data(f.name))});
  metadata_map metadata = out.metadata();
  out = sequence_batch<Tensor>(std::vector<sample_id>(result.ids().begin(), result.ids().end()),
                               std::move(fields), std::move(metadata));
}

}  // namespace redist::detail
