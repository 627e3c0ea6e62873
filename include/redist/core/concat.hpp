// redist::concat: one batch of the samples of several, each key's tensor allocated once.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/text.hpp"

namespace redist {

// Concatenates batches: every batch must have the same keys (dtype and trailing shape alike), the same
// metadata names, and data for all or none; ids must be distinct across batches.
template <class Tensor>
requires detail::host_allocatable<Tensor> sequence_batch<Tensor> concat(
    std::span<const sequence_batch<Tensor>> batches) {
  using batch = sequence_batch<Tensor>;
  if (batches.empty()) return {};
  const batch& first = batches.front();
  std::size_t total = 0;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const batch& x = batches[b];
    total += x.size();
    if (x.fields_.size() != first.fields_.size() || x.has_data() != first.has_data())
      detail::fail("redist::concat: batch ", b, " has ", x.fields_.size(), " keys",
                   x.has_data() ? "" : " (no data)", ", batch 0 has ", first.fields_.size(),
                   first.has_data() ? "" : " (no data)");
    for (const auto& f : first.fields_) {
      auto k = x.find_key(f.name);
      if (!k) detail::fail("redist::concat: batch ", b, " lacks key '", f.name, "'");
      const auto& g = x.fields_[*k];
      if (g.dtype != f.dtype || g.trailing_shape != f.trailing_shape)
        detail::fail("redist::concat: key '", f.name, "' is ", name(g.dtype),
                     detail::shape_text(g.trailing_shape), " in batch ", b, " but ", name(f.dtype),
                     detail::shape_text(f.trailing_shape), " in batch 0");
    }
    if (x.metadata_.size() != first.metadata_.size() ||
        !std::equal(x.metadata_.begin(), x.metadata_.end(), first.metadata_.begin(),
                    [](const auto& a, const auto& c) { return a.first == c.first; }))
      detail::fail("redist::concat: batch ", b, " has other metadata names than batch 0");
  }
  std::vector<std::pair<std::size_t, std::size_t>> where;
  where.reserve(total);
  std::vector<sample_id> ids;
  ids.reserve(total);
  std::vector<const batch*> sources;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    sources.push_back(&batches[b]);
    for (std::size_t i = 0; i < batches[b].size(); ++i) {
      where.emplace_back(b, i);
      ids.push_back(batches[b].ids_[i]);
    }
  }
  std::vector<typename batch::field> fields;
  for (const auto& f : first.fields_)
    fields.push_back(batch::assemble(
        f, sources, [&](std::size_t i) { return where[i]; }, total));
  metadata_map metadata;
  for (const auto& [name, values] : first.metadata_) {
    auto& out = metadata[name];
    out.reserve(total);
    for (const auto& x : batches) {
      const auto& v = x.metadata_.find(name)->second;
      out.insert(out.end(), v.begin(), v.end());
    }
  }
  return batch(std::move(ids), std::move(fields), std::move(metadata));
}

template <class Tensor>
requires detail::host_allocatable<Tensor> sequence_batch<Tensor> concat(
    const std::vector<sequence_batch<Tensor>>& batches) {
  return concat(std::span<const sequence_batch<Tensor>>(batches));
}

}  // namespace redist
