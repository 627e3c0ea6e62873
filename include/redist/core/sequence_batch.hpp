// redist::sequence_batch<Tensor>: samples with ids whose keys hold sequence-packed tensors, the unit redist
// moves. Holds the validation rules every batch obeys and the operations that split, join and select batches.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/key_field.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"
#include "redist/detail/text.hpp"

namespace redist {

using sample_id = std::uint64_t;

namespace detail {

template <class Tensor>
concept host_allocatable = allocatable_tensor<Tensor> && tensor_space<Tensor>
== memory_space::host;

}  // namespace detail

template <class Tensor = host_tensor>
class sequence_batch {
  static_assert(detail::diagnose_tensor_like<Tensor>());
  using traits = tensor_traits<Tensor>;

 public:
  using tensor_type = Tensor;
  using field = key_field<Tensor>;

  sequence_batch() = default;

  // Validates everything; throws redist::error naming the key, the id and the rule broken.
  sequence_batch(std::vector<sample_id> ids, std::vector<field> fields, metadata_map metadata = {})
      : ids_(std::move(ids)), fields_(std::move(fields)), metadata_(std::move(metadata)) {
    order_ = index_ids(ids_);
    check_key_set(fields_);
    for (const auto& f : fields_) layouts_.push_back(check_key(f));
    check_metadata(metadata_);
  }

  std::span<const sample_id> ids() const noexcept { return ids_; }
  std::size_t size() const noexcept { return ids_.size(); }
  bool empty() const noexcept { return ids_.empty(); }

  const std::vector<field>& fields() const noexcept { return fields_; }
  std::vector<std::string_view> keys() const {
    std::vector<std::string_view> names;
    names.reserve(fields_.size());
    for (const auto& f : fields_) names.push_back(f.name);
    return names;
  }
  bool has_key(std::string_view key) const noexcept { return find_key(key).has_value(); }
  const field& at(std::string_view key) const { return fields_[key_index(key, "at")]; }
  // True when the batch carries tensors, false when it is metadata only (every key agrees).
  bool has_data() const noexcept { return !fields_.empty() && fields_.front().data.has_value(); }

  // Position of an id in ids(), if present. O(log n).
  std::optional<std::size_t> find(sample_id id) const noexcept {
    auto it = std::lower_bound(order_.begin(), order_.end(), id,
                               [&](std::size_t pos, sample_id v) { return ids_[pos] < v; });
    if (it == order_.end() || ids_[*it] != id) return std::nullopt;
    return *it;
  }
  bool contains(sample_id id) const noexcept { return find(id).has_value(); }

  std::span<const std::int64_t> seqlens(std::string_view key, std::size_t sample) const {
    return fields_[key_index(key, "seqlens")].seqlens[checked_sample(sample, "seqlens")];
  }
  std::int64_t tokens(std::string_view key, std::size_t sample) const {
    const auto& off = layouts_[key_index(key, "tokens")].offsets;
    const std::size_t i = checked_sample(sample, "tokens");
    return off[i + 1] - off[i];
  }
  std::int64_t total_tokens(std::string_view key) const {
    return layouts_[key_index(key, "total_tokens")].offsets.back();
  }
  // The bytes of sample `sample` (a position in ids()) inside key's tensor.
  byte_range sample_bytes(std::string_view key, std::size_t sample) const {
    const auto& l = layouts_[key_index(key, "sample_bytes")];
    const std::size_t i = checked_sample(sample, "sample_bytes");
    return {static_cast<std::size_t>(l.offsets[i]) * l.row_bytes,
            static_cast<std::size_t>(l.offsets[i + 1] - l.offsets[i]) * l.row_bytes};
  }

  Tensor& data(std::string_view key) {
    field& f = fields_[key_index(key, "data")];
    if (!f.data) no_data(f);
    return *f.data;
  }
  const Tensor& data(std::string_view key) const {
    const field& f = fields_[key_index(key, "data")];
    if (!f.data) no_data(f);
    return *f.data;
  }

  const metadata_map& metadata() const noexcept { return metadata_; }
  void set_metadata(std::string name, std::vector<std::string> values) {
    check_metadata_entry(name, values);
    metadata_.insert_or_assign(std::move(name), std::move(values));
  }

  // Adds a key (all rules checked first; the batch is unchanged on error).
  void add_key(field f) {
    if (find_key(f.name)) detail::fail("redist::sequence_batch::add_key: key '", f.name, "' already exists");
    auto layout = check_key(f);
    if (!fields_.empty() && f.data.has_value() != has_data()) {
      detail::fail("redist::sequence_batch::add_key: key '", f.name, "' ", f.data ? "has" : "has no",
                   " data but the batch is ", has_data() ? "not " : "", "metadata only");
    }
    fields_.push_back(std::move(f));
    layouts_.push_back(std::move(layout));
  }

  // Re-checks every rule, e.g. after the caller reshaped a tensor reached through data().
  void validate() const {
    index_ids(ids_);
    check_key_set(fields_);
    for (const auto& f : fields_) check_key(f);
    check_metadata(metadata_);
  }

  // One batch per sample, in ids() order.
  std::vector<sequence_batch> unpack() const requires detail::host_allocatable<Tensor> {
    std::vector<sequence_batch> out;
    out.reserve(size());
    for (std::size_t i = 0; i < size(); ++i) {
      const std::size_t one[] = {i};
      out.push_back(take(one));
    }
    return out;
  }

  // The samples `ids` (in that order) with the keys `keys` (in that order); all keys when `keys` is empty.
  sequence_batch select(const std::vector<sample_id>& ids, const std::vector<std::string>& keys = {})
      const requires detail::host_allocatable<Tensor> {
    std::vector<std::size_t> positions;
    positions.reserve(ids.size());
    for (sample_id id : ids) {
      auto pos = find(id);
      if (!pos) detail::fail("redist::sequence_batch::select: id ", id, " is not in the batch");
      positions.push_back(*pos);
    }
    index_ids(ids, "redist::sequence_batch::select: requested");
    std::vector<std::size_t> key_positions;
    for (const auto& k : keys) {
      const std::size_t ki = key_index(k, "select");
      if (std::find(key_positions.begin(), key_positions.end(), ki) != key_positions.end())
        detail::fail("redist::sequence_batch::select: key '", k, "' requested twice");
      key_positions.push_back(ki);
    }
    return take(positions, keys.empty() ? nullptr : &key_positions);
  }

  // Merges the keys of `other`, which must hold exactly the same ids (in any order): its keys are added,
  // or replace keys of the same name; its metadata entries likewise. Pass an rvalue whose ids are in the
  // same order to move its tensors instead of copying them.
  void update(sequence_batch other) requires detail::host_allocatable<Tensor> {
    if (other.size() != size())
      detail::fail("redist::sequence_batch::update: the update has ", other.size(), " ids, the batch ",
                   size());
    std::vector<std::size_t> positions(size());
    for (std::size_t i = 0; i < size(); ++i) {
      auto pos = other.find(ids_[i]);
      if (!pos) detail::fail("redist::sequence_batch::update: id ", ids_[i], " is not in the update");
      positions[i] = *pos;
    }
    if (!fields_.empty() && !other.fields_.empty() && other.has_data() != has_data()) {
      detail::fail("redist::sequence_batch::update: the batch ", has_data() ? "holds" : "lacks",
                   " data but the update ", other.has_data() ? "holds" : "lacks", " it");
    }
    // A sorted permutation is the identity: the update's tensors can be moved as they are.
    if (!std::is_sorted(positions.begin(), positions.end())) other = other.take(positions);
    auto metadata = metadata_;
    for (auto& [name, values] : other.metadata_) metadata.insert_or_assign(name, std::move(values));
    fields_.reserve(fields_.size() + other.fields_.size());
    layouts_.reserve(layouts_.size() + other.layouts_.size());
    // Nothing below allocates or throws: the batch is unchanged if anything above failed.
    for (std::size_t k = 0; k < other.fields_.size(); ++k) {
      if (auto mine = find_key(other.fields_[k].name)) {
        fields_[*mine] = std::move(other.fields_[k]);
        layouts_[*mine] = std::move(other.layouts_[k]);
      } else {
        fields_.push_back(std::move(other.fields_[k]));
        layouts_.push_back(std::move(other.layouts_[k]));
      }
    }
    metadata_ = std::move(metadata);
  }

  template <class T>
  requires detail::host_allocatable<T>
  friend sequence_batch<T> concat(std::span<const sequence_batch<T>> batches);

 private:
  std::optional<std::size_t> find_key(std::string_view key) const noexcept {
    for (std::size_t k = 0; k < fields_.size(); ++k)
      if (fields_[k].name == key) return k;
    return std::nullopt;
  }

  std::size_t key_index(std::string_view key, const char* fn) const {
    if (auto k = find_key(key)) return *k;
    std::ostringstream known;
    for (const auto& f : fields_) known << (&f == fields_.data() ? "" : ", ") << "'" << f.name << "'";
    detail::fail("redist::sequence_batch::", fn, ": unknown key '", key, "' (keys: ", known.str(), ")");
  }

  std::size_t checked_sample(std::size_t sample, const char* fn) const {
    if (sample >= size())
      detail::fail("redist::sequence_batch::", fn, ": sample position ", sample, " is out of range for ",
                   size(), " ids");
    return sample;
  }

  [[noreturn]] static void no_data(const field& f) {
    detail::fail("redist::sequence_batch::data: key '", f.name, "' has no data (metadata-only batch)");
  }

  // Positions of ids sorted by id; throws on a duplicate. Doubles as the lookup index.
  static std::vector<std::size_t> index_ids(std::span<const sample_id> ids,
                                            std::string_view who = "redist::sequence_batch:") {
    std::vector<std::size_t> order(ids.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return ids[a] != ids[b] ? ids[a] < ids[b] : a < b; });
    for (std::size_t i = 1; i < order.size(); ++i) {
      if (ids[order[i]] == ids[order[i - 1]])
        detail::fail(who, " id ", ids[order[i]], " appears twice (positions ", order[i - 1], " and ",
                     order[i], ")");
    }
    return order;
  }

  static void check_key_set(const std::vector<field>& fields) {
    for (std::size_t k = 0; k < fields.size(); ++k) {
      if (fields[k].name.empty()) detail::fail("redist::sequence_batch: key ", k, " has an empty name");
      for (std::size_t j = 0; j < k; ++j)
        if (fields[j].name == fields[k].name)
          detail::fail("redist::sequence_batch: key '", fields[k].name, "' appears twice");
      if (fields[k].data.has_value() != fields.front().data.has_value()) {
        const auto& with = fields[k].data ? fields[k] : fields.front();
        const auto& without = fields[k].data ? fields.front() : fields[k];
        detail::fail("redist::sequence_batch: key '", without.name, "' has no data but key '", with.name,
                     "' has: a batch holds data for all its keys or for none");
      }
    }
  }

  // Checks one key against ids_ and derives its layout. Cost: one pass over its seqlens.
  detail::key_layout check_key(const field& f) const {
    const std::size_t n = ids_.size();
    if (f.seqlens.size() != n)
      detail::fail("redist::sequence_batch: key '", f.name, "': seqlens has ", f.seqlens.size(),
                   " entries for ", n, " ids");
    detail::key_layout l;
    l.row_bytes = size_of(f.dtype);
    if (l.row_bytes == 0)
      detail::fail("redist::sequence_batch: key '", f.name, "': dtype code ", int(f.dtype),
                   " is not a redist::dtype");
    for (std::int64_t e : f.trailing_shape) {
      if (e < 0 || !detail::checked_mul(l.row_bytes, static_cast<std::size_t>(e), l.row_bytes))
        detail::fail("redist::sequence_batch: key '", f.name, "': trailing shape ",
                     detail::shape_text(f.trailing_shape), e < 0 ? " has a negative extent" : " overflows");
    }
    l.offsets.resize(n + 1);
    for (std::size_t i = 0; i < n; ++i) {
      std::int64_t total = l.offsets[i];
      const auto lens = f.seqlens[i];
      for (std::size_t s = 0; s < lens.size(); ++s) {
        if (lens[s] < 0)
          detail::fail("redist::sequence_batch: key '", f.name, "', id ", ids_[i], ": sequence ", s,
                       " has negative length ", lens[s]);
        if (!detail::checked_add(total, lens[s], total))
          detail::fail("redist::sequence_batch: key '", f.name, "', id ", ids_[i], ": token count overflows");
      }
      l.offsets[i + 1] = total;
    }
    if (!detail::rows_bytes(f.dtype, l.offsets[n], f.trailing_shape))
      detail::fail("redist::sequence_batch: key '", f.name, "': ", l.offsets[n], " tokens of shape ",
                   detail::shape_text(f.trailing_shape), " overflow the size type");
    if (f.data) check_data(f, *f.data, l.offsets[n]);
    return l;
  }

  static void check_data(const field& f, const Tensor& t, std::int64_t tokens) {
    const auto actual = traits::dtype(t);
    if (actual != f.dtype)
      detail::fail("redist::sequence_batch: key '", f.name, "': data has dtype ", name(actual),
                   " but the key declares ", name(f.dtype));
    const std::size_t rank = traits::rank(t);
    std::vector<std::int64_t> shape(rank);
    for (std::size_t d = 0; d < rank; ++d) shape[d] = static_cast<std::int64_t>(traits::extent(t, d));
    if (rank == 0)
      detail::fail("redist::sequence_batch: key '", f.name,
                   "': data is a scalar; dim 0 must count the tokens");
    if (!std::equal(shape.begin() + 1, shape.end(), f.trailing_shape.begin(), f.trailing_shape.end()))
      detail::fail("redist::sequence_batch: key '", f.name, "': data has shape ", detail::shape_text(shape),
                   " but the key declares trailing shape ", detail::shape_text(f.trailing_shape));
    if (shape[0] != tokens)
      detail::fail("redist::sequence_batch: key '", f.name, "': data has ", shape[0],
                   " rows but its seqlens sum to ", tokens, " tokens");
    if constexpr (detail::traits_have_contiguity<Tensor>) {
      if (!traits::is_contiguous(t))
        detail::fail("redist::sequence_batch: key '", f.name, "': data is not contiguous");
    }
  }

  void check_metadata_entry(std::string_view name, const std::vector<std::string>& values) const {
    if (values.size() != size())
      detail::fail("redist::sequence_batch: metadata '", name, "' has ", values.size(), " values for ",
                   size(), " ids");
  }
  void check_metadata(const metadata_map& m) const {
    for (const auto& [name, values] : m) check_metadata_entry(name, values);
  }

  // A new batch of the samples at `positions` (keys at `keys`, or all): each key's tensor allocated once.
  sequence_batch take(std::span<const std::size_t> positions,
                      const std::vector<std::size_t>* keys = nullptr) const {
    const std::size_t nkeys = keys ? keys->size() : fields_.size();
    std::vector<sample_id> ids(positions.size());
    for (std::size_t i = 0; i < positions.size(); ++i) ids[i] = ids_[positions[i]];
    std::vector<field> fields;
    fields.reserve(nkeys);
    for (std::size_t j = 0; j < nkeys; ++j) {
      const std::size_t k = keys ? (*keys)[j] : j;
      const sequence_batch* sources[] = {this};
      fields.push_back(assemble(
          fields_[k], std::span{sources},
          [&](std::size_t i) {
            return std::pair{std::size_t{0}, positions[i]};
          },
          positions.size()));
    }
    metadata_map metadata;
    for (const auto& [name, values] : metadata_) {
      auto& out = metadata[name];
      out.reserve(positions.size());
      for (std::size_t p : positions) out.push_back(values[p]);
    }
    return sequence_batch(std::move(ids), std::move(fields), std::move(metadata));
  }

  // Builds a key from `count` samples; sample i is (batch index, position) = where(i) among `sources`.
  // Adjacent source bytes are copied as one piece.
  template <class Where>
  static field assemble(const field& like, std::span<const sequence_batch* const> sources, Where where,
                        std::size_t count) {
    field out{like.name, like.dtype, like.trailing_shape, {}, std::nullopt};
    out.seqlens.reserve(count, count);
    std::int64_t tokens = 0;
    std::vector<const_segment> pieces;
    for (std::size_t i = 0; i < count; ++i) {
      const auto [b, pos] = where(i);
      const sequence_batch& src = *sources[b];
      const std::size_t k = *src.find_key(like.name);
      out.seqlens.push_back(src.fields_[k].seqlens[pos]);
      const auto& off = src.layouts_[k].offsets;
      if (!detail::checked_add(tokens, off[pos + 1] - off[pos], tokens))
        detail::fail("redist::concat: key '", like.name, "': token count overflows");
      if (!like.data) continue;
      const auto* base = static_cast<const std::byte*>(traits::data(*src.fields_[k].data));
      const std::size_t rb = src.layouts_[k].row_bytes;
      detail::append_piece(pieces, const_segment{base + static_cast<std::size_t>(off[pos]) * rb,
                                                 static_cast<std::size_t>(off[pos + 1] - off[pos]) * rb});
    }
    if (like.data) {
      std::vector<std::int64_t> shape{tokens};
      shape.insert(shape.end(), like.trailing_shape.begin(), like.trailing_shape.end());
      out.data = traits::allocate(like.dtype, shape);
      space_of<Tensor>::gather(pieces, static_cast<std::byte*>(traits::data(*out.data)));
    }
    return out;
  }

  std::vector<sample_id> ids_;
  std::vector<field> fields_;
  metadata_map metadata_;
  std::vector<std::size_t> order_;           // positions sorted by id
  std::vector<detail::key_layout> layouts_;  // parallel to fields_
};

}  // namespace redist
