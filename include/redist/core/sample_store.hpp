// redist::sample_store<Tensor>: the batches a rank holds, indexed by (sample id, key), from which it packs
// the batches it sends or returns. Batches are kept whole, as they came, and never copied on the way in.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "redist/core/catalog.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"
#include "redist/detail/id_table.hpp"

namespace redist {

// Rules: every (id, key) is held once; a key has one dtype and trailing shape across the store; the store
// holds data for every pair or for none (the first batch with a key decides).
template <class Tensor = host_tensor>
class sample_store {
  static_assert(detail::diagnose_tensor_like<Tensor>());
  using traits = tensor_traits<Tensor>;

 public:
  using batch_type = sequence_batch<Tensor>;

  // Where an (id, key) sits: batch->ids()[position] is the id. Stable while the store lives, moves included.
  struct location {
    const sequence_batch<Tensor>* batch;
    std::size_t position;
  };

  sample_store() = default;
  explicit sample_store(sequence_batch<Tensor> batch) { add(std::move(batch)); }
  // Locations point into the store's batches: a copy would point into the original's. Moves keep them.
  sample_store(const sample_store&) = delete;
  sample_store& operator=(const sample_store&) = delete;
  sample_store(sample_store&&) noexcept = default;
  sample_store& operator=(sample_store&&) noexcept = default;
  ~sample_store() = default;

  // Takes the batch. Every (id, key) in it must be new to the store, each key's dtype and trailing shape must
  // match the store's, and it must hold data if the store does (and not if not). Checks run key by key in the
  // batch's order, then id by id. Strong guarantee: on any exception the store is unchanged.
  void add(sequence_batch<Tensor> batch) {
    if (!check_new(batch)) return;
    owned_.push_back(std::move(batch));
    try {
      index(owned_.back());
    } catch (...) {
      owned_.pop_back();
      throw;
    }
  }

  // Holds `batch` without copying it, under the rules of add(): it must outlive the store, unchanged.
  void borrow(const sequence_batch<Tensor>& batch) {
    if (check_new(batch)) index(batch);
  }

  bool holds(sample_id id, std::string_view key) const noexcept { return find_slot(id, key) != nullptr; }

  std::optional<location> find(sample_id id, std::string_view key) const noexcept {
    const slot* s = find_slot(id, key);
    if (!s) return std::nullopt;
    return location{batches_[s->batch], s->position};
  }

  std::size_t pairs() const noexcept { return pairs_; }  // (id, key) pairs held

  // Every pair held, ascending by id, then by key.
  std::vector<std::pair<sample_id, std::string>> held() const {
    std::vector<std::pair<sample_id, std::string>> out;
    out.reserve(pairs_);
    for (const auto& [name, entry] : keys_)
      entry.ids.for_each([&, &n = name](sample_id id, const slot&) { out.emplace_back(id, n); });
    std::sort(out.begin(), out.end());
    return out;
  }

  // One packed batch of `ids` (in that order) with `keys` (in that order), each key's tensor allocated once;
  // metadata only if the store is. Every (id, key) must be held: the error names the first missing one, ids
  // outermost. With no keys, the batch has the ids and nothing else.
  // Per-sample metadata: a name comes along when every batch that supplies one of the pairs has it; an id's
  // value is taken from the batch that holds (id, keys.front()).
  sequence_batch<Tensor> collect(const std::vector<sample_id>& ids, const std::vector<std::string>& keys)
      const requires detail::host_allocatable<Tensor> {
    check_distinct(ids, keys);
    return assemble<Tensor>(ids, resolve(ids, keys, "collect"), data_.value_or(false));
  }

  // A metadata-only batch of everything held: ids ascending, keys ascending by name (keys that no id holds
  // left out), metadata as collect() brings it. Every id must hold the same keys; the error names the
  // smallest id whose keys differ from the smallest id's. Suits storage_tracker::from_batches and
  // encode_metadata, whatever Tensor is.
  sequence_batch<host_tensor> metadata_batch() const {
    std::vector<std::string> names;
    std::vector<std::pair<sample_id, std::size_t>> pairs;  // (id, key number)
    pairs.reserve(pairs_);
    for (const auto& [name, entry] : keys_) {
      if (entry.ids.empty()) continue;
      entry.ids.for_each([&](sample_id id, const slot&) { pairs.emplace_back(id, names.size()); });
      names.push_back(name);
    }
    std::sort(pairs.begin(), pairs.end());
    // Each id's keys are a run of pairs; every run must match the first.
    auto run_end = [&](std::size_t p) {
      std::size_t q = p;
      while (q < pairs.size() && pairs[q].first == pairs[p].first) ++q;
      return q;
    };
    const std::size_t first_end = run_end(0);
    auto same_keys = [&](std::size_t p, std::size_t q) {
      return q - p == first_end &&
             std::equal(pairs.begin() + static_cast<std::ptrdiff_t>(p),
                        pairs.begin() + static_cast<std::ptrdiff_t>(q), pairs.begin(),
                        [](const auto& x, const auto& y) { return x.second == y.second; });
    };
    auto list = [&](std::size_t from, std::size_t to) {
      std::string s;
      for (std::size_t x = from; x < to; ++x) s += (x == from ? "'" : ", '") + names[pairs[x].second] + "'";
      return s;
    };
    std::vector<sample_id> ids;
    for (std::size_t p = 0; p < pairs.size();) {
      const std::size_t q = run_end(p);
      if (!same_keys(p, q))
        detail::fail("redist::sample_store::metadata_batch: id ", pairs[p].first, " has keys ", list(p, q),
                     " but id ", pairs[0].first, " has ", list(0, first_end),
                     "; a metadata batch needs the same keys for every id");
      ids.push_back(pairs[p].first);
      p = q;
    }
    return assemble<host_tensor>(ids, resolve(ids, names, "metadata_batch"), false);
  }

 private:
  // The checks of add(); false when the batch has no (id, key) pair to hold.
  bool check_new(const sequence_batch<Tensor>& batch) const {
    const auto& fields = batch.fields();
    if (fields.empty()) return false;
    if (data_ && *data_ != batch.has_data())
      detail::fail("redist::sample_store::add: the batch ",
                   batch.has_data() ? "holds data" : "is metadata only", " but the store ",
                   *data_ ? "holds data" : "is metadata only");
    std::vector<const key_entry*> known(fields.size(), nullptr);
    for (std::size_t f = 0; f < fields.size(); ++f) {
      auto it = keys_.find(fields[f].name);
      if (it == keys_.end()) continue;
      known[f] = &it->second;
      const key_schema& s = it->second.schema;
      if (s.dtype != fields[f].dtype || s.trailing_shape != fields[f].trailing_shape)
        detail::fail("redist::sample_store::add: key '", fields[f].name, "' is ",
                     detail::schema_string(fields[f].dtype, fields[f].trailing_shape), " in the batch but ",
                     detail::schema_string(s.dtype, s.trailing_shape), " in the store");
    }
    for (std::size_t f = 0; f < fields.size(); ++f) {
      if (!known[f]) continue;
      for (sample_id id : batch.ids())
        if (known[f]->ids.contains(id))
          detail::fail("redist::sample_store::add: id ", id, ", key '", fields[f].name, "' is already held");
    }
    if (batches_.size() >= std::numeric_limits<std::uint32_t>::max())
      detail::fail("redist::sample_store::add: the store holds ", batches_.size(),
                   " batches, the most it can");

    return true;
  }

  // Indexes a batch that lives in owned_ or is borrowed. Everything that allocates comes first (the batch's
  // entry, new keys, room in each key's table) and is undone if it throws; the insertions cannot fail.
  void index(const batch_type& b) {
    const auto number = static_cast<std::uint32_t>(batches_.size());
    std::vector<std::string_view> created;
    created.reserve(b.fields().size());  // so that recording a key just created cannot throw
    batches_.push_back(&b);
    try {
      for (const auto& fl : b.fields()) {
        auto it = keys_.find(fl.name);
        if (it == keys_.end()) {
          it = keys_.try_emplace(fl.name, key_entry{{fl.name, fl.dtype, fl.trailing_shape}, {}}).first;
          created.push_back(it->first);
        }
        it->second.ids.reserve(b.size());
      }
    } catch (...) {
      for (std::string_view name : created) keys_.erase(keys_.find(name));
      batches_.pop_back();
      throw;
    }
    for (std::size_t f = 0; f < b.fields().size(); ++f) {
      auto& ids = keys_.find(b.fields()[f].name)->second.ids;
      for (std::size_t i = 0; i < b.size(); ++i)
        ids.insert(b.ids()[i], slot{number, static_cast<std::uint32_t>(f), i});
    }
    pairs_ += b.size() * b.fields().size();
    data_ = b.has_data();
  }

  struct slot {
    std::uint32_t batch;  // in batches_
    std::uint32_t field;  // in that batch's fields()
    std::size_t position;
  };
  struct key_entry {
    key_schema schema;
    detail::id_table<slot> ids;
  };
  // The slot of every requested pair, key by key: slots[k * ids + i].
  struct request {
    std::vector<const key_entry*> keys;
    std::vector<slot> slots;
  };

  const slot* find_slot(sample_id id, std::string_view key) const noexcept {
    auto k = keys_.find(key);
    if (k == keys_.end()) return nullptr;
    return k->second.ids.find(id);
  }

  static void check_distinct(const std::vector<sample_id>& ids, const std::vector<std::string>& keys) {
    std::vector<std::size_t> order(ids.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return ids[a] != ids[b] ? ids[a] < ids[b] : a < b; });
    // Of the repeated ids, name the one repeated first in request order.
    std::size_t repeat = ids.size();
    for (std::size_t i = 1; i < order.size(); ++i)
      if (ids[order[i]] == ids[order[i - 1]]) repeat = std::min(repeat, order[i]);
    if (repeat < ids.size())
      detail::fail("redist::sample_store::collect: id ", ids[repeat], " is requested twice");
    for (std::size_t k = 0; k < keys.size(); ++k)
      for (std::size_t j = 0; j < k; ++j)
        if (keys[j] == keys[k])
          detail::fail("redist::sample_store::collect: key '", keys[k], "' is requested twice");
  }

  request resolve(const std::vector<sample_id>& ids, std::span<const std::string> keys,
                  const char* fn) const {
    request r;
    r.keys.reserve(keys.size());
    for (const auto& k : keys) {
      auto it = keys_.find(k);
      r.keys.push_back(it == keys_.end() ? nullptr : &it->second);
    }
    r.slots.resize(ids.size() * keys.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      for (std::size_t k = 0; k < keys.size(); ++k) {
        const key_entry* e = r.keys[k];
        const slot* s = nullptr;
        if (e) s = e->ids.find(ids[i]);
        if (!s)
          detail::fail("redist::sample_store::", fn, ": id ", ids[i], ", key '", keys[k], "' is not held");
        r.slots[k * ids.size() + i] = *s;
      }
    }
    // With no ids, a key still needs a schema.
    for (std::size_t k = 0; k < keys.size(); ++k)
      if (!r.keys[k]) detail::fail("redist::sample_store::", fn, ": key '", keys[k], "' is not in the store");
    return r;
  }

  template <class Out>
  sequence_batch<Out> assemble(const std::vector<sample_id>& ids, const request& r, bool with_data) const {
    const std::size_t n = ids.size();
    std::vector<key_field<Out>> fields;
    fields.reserve(r.keys.size());
    for (std::size_t k = 0; k < r.keys.size(); ++k) {
      const key_schema& schema = r.keys[k]->schema;
      key_field<Out> out{schema.name, schema.dtype, schema.trailing_shape, {}, std::nullopt};
      const std::span<const slot> slots(r.slots.data() + k * n, n);
      std::size_t sequences = 0;
      for (const slot& s : slots) sequences += seqlens_at(s).size();
      out.seqlens.reserve(n, sequences);
      for (const slot& s : slots) out.seqlens.push_back(seqlens_at(s));
      if constexpr (std::is_same_v<Out, Tensor> && detail::host_allocatable<Tensor>) {
        if (with_data) out.data = pack(schema, slots);
      }
      fields.push_back(std::move(out));
    }
    return sequence_batch<Out>(ids, std::move(fields), collect_metadata(r, n));
  }

  std::span<const std::int64_t> seqlens_at(const slot& s) const noexcept {
    return batches_[s.batch]->fields()[s.field].seqlens[s.position];
  }

  // The key's tensor for `slots`, allocated once; runs of samples adjacent in their source go as one piece.
  Tensor pack(const key_schema& schema,
              std::span<const slot> slots) const requires detail::host_allocatable<Tensor> {
    std::vector<const_segment> pieces;
    std::int64_t tokens = 0;
    for (const slot& s : slots) {
      const batch_type& b = *batches_[s.batch];
      for (std::int64_t l : seqlens_at(s))
        if (!detail::checked_add(tokens, l, tokens))
          detail::fail("redist::sample_store::collect: key '", schema.name, "': token count overflows");
      const byte_range range = b.sample_bytes(schema.name, s.position);
      if (range.size == 0) continue;
      const auto* src = static_cast<const std::byte*>(traits::data(*b.fields()[s.field].data)) + range.offset;
      detail::append_piece(pieces, const_segment{src, range.size});
    }
    std::vector<std::int64_t> shape{tokens};
    shape.insert(shape.end(), schema.trailing_shape.begin(), schema.trailing_shape.end());
    Tensor t = traits::allocate(schema.dtype, shape);
    space_of<Tensor>::gather(pieces, static_cast<std::byte*>(traits::data(t)));
    return t;
  }

  // See collect(): names every supplying batch has; values from the batch holding the first key.
  metadata_map collect_metadata(const request& r, std::size_t n) const {
    if (r.keys.empty() || n == 0) return {};
    std::vector<std::uint32_t> sources;
    for (const slot& s : r.slots) sources.push_back(s.batch);
    std::sort(sources.begin(), sources.end());
    sources.erase(std::unique(sources.begin(), sources.end()), sources.end());
    metadata_map out;
    for (const auto& [name, values] : batches_[sources.front()]->metadata()) {
      bool everywhere = true;
      for (std::uint32_t b : sources) everywhere = everywhere && batches_[b]->metadata().count(name) != 0;
      if (!everywhere) continue;
      auto& column = out[name];
      column.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        const slot& s = r.slots[i];
        column.push_back(batches_[s.batch]->metadata().find(name)->second[s.position]);
      }
    }
    return out;
  }

  std::deque<batch_type> owned_;            // a deque: push_back never moves the batches locations point into
  std::vector<const batch_type*> batches_;  // every batch held, owned or borrowed
  std::map<std::string, key_entry, std::less<>> keys_;
  std::size_t pairs_ = 0;
  std::optional<bool> data_;  // whether the store holds data; unknown until a batch with a key arrives
};

}  // namespace redist
