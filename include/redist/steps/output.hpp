// redist::detail::output_sink: where the steps of the one-call form put what arrives (straight into the
// result), and the copy of what this rank held already once the steps are done.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "redist/core/catalog.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/staging/copy_list.hpp"
#include "redist/staging/windows.hpp"

namespace redist::detail {

// Arriving pairs the output wants land in it directly, each once (claim); what this rank held already is
// copied in at the end (fill). `out` has its tensors allocated.
template <class Tensor>
class output_sink {
 public:
  static constexpr std::size_t npos = SIZE_MAX;

  output_sink(sequence_batch<Tensor>& out, const catalog& cat)
      : out_(out),
        cat_(cat),
        field_of_key_(cat.keys().size(), npos),
        delivered_(out.size() * out.fields().size()) {
    for (std::size_t f = 0; f < out.fields().size(); ++f)
      if (const auto k = cat.find_key(out.fields()[f].name)) field_of_key_[*k] = f;
  }

  // The place of an arriving item in the output, now taken, or npos when the output does not want it or
  // has it already.
  std::size_t claim(stream_item it) {
    const std::size_t at = place(it);
    if (at == npos || delivered_[at]) return npos;
    delivered_[at] = true;
    return at;
  }
  // The bytes of a claimed place.
  std::byte* bytes(stream_item it, std::size_t at) const {
    const auto& key = cat_.keys()[it.key].name;
    return static_cast<std::byte*>(tensor_traits<Tensor>::data(out_.data(key))) +
           out_.sample_bytes(key, at / out_.fields().size()).offset;
  }
  // An item delivered to the output already (which a later stage may relay), or null.
  const std::byte* delivered(stream_item it) const {
    const std::size_t at = place(it);
    return at != npos && delivered_[at] ? bytes(it, at) : nullptr;
  }

  // Copies in every pair not delivered from `store` (this rank's samples), runs adjacent in both the source
  // batch and the output as one piece, looking a batch's tensor up once per run of samples from it: one table
  // of copies, made by `space`.
  template <class Space>
  void fill(const sample_store<Tensor>& store, int rank, const Space& space) const {
    copy_list copies;
    const std::size_t nf = out_.fields().size();
    for (std::size_t f = 0; f < nf; ++f) {
      const auto& key = out_.fields()[f].name;
      auto* dst = static_cast<std::byte*>(tensor_traits<Tensor>::data(out_.data(key)));
      const sequence_batch<Tensor>* batch = nullptr;
      const std::byte* base = nullptr;
      const std::byte* from = nullptr;
      std::byte* to = nullptr;
      std::size_t run = 0;
      for (std::size_t i = 0; i < out_.size(); ++i) {
        if (delivered_[i * nf + f]) continue;
        const auto loc = store.find(out_.ids()[i], key);
        if (!loc)
          fail("redist::redistribute: rank ", rank, " ends without id ", out_.ids()[i], ", key '", key, "'");
        if (loc->batch != batch) {
          batch = loc->batch;
          base = static_cast<const std::byte*>(tensor_traits<Tensor>::data(batch->data(key)));
        }
        const std::byte* src = base + batch->sample_bytes(key, loc->position).offset;
        const auto range = out_.sample_bytes(key, i);
        if (from + run == src && to + run == dst + range.offset) {
          run += range.size;
          continue;
        }
        copies.copy(to, from, run);
        from = src;
        to = dst + range.offset;
        run = range.size;
      }
      copies.copy(to, from, run);
    }
    copies.run(space);
  }

 private:
  // (output position) x fields + field, or npos when the output does not want the item.
  std::size_t place(stream_item it) const {
    const std::size_t f = field_of_key_[it.key];
    if (f == npos) return npos;
    const auto i = out_.find(it.id);
    return i ? *i * out_.fields().size() + f : npos;
  }

  sequence_batch<Tensor>& out_;
  const catalog& cat_;
  std::vector<std::size_t> field_of_key_;  // catalog key -> output field, or npos
  std::vector<bool> delivered_;            // per (output position, field)
};

}  // namespace redist::detail
