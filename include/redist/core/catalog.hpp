// redist::catalog: what every rank must know about each (sample id, key) to send or receive it: the key's
// dtype and trailing shape (redist::key_schema) and the sample's seqlens, gathered from every rank's batch.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/sequence_batch.hpp"

namespace redist {

namespace detail {

inline std::size_t row_bytes(redist::dtype t, std::span<const std::int64_t> trailing) noexcept {
  std::size_t n = size_of(t);
  for (std::int64_t e : trailing) n *= static_cast<std::size_t>(e);
  return n;
}

}  // namespace detail

// A key's type: its name, dtype and the shape of one token row.
struct key_schema {
  std::string name;
  redist::dtype dtype = redist::dtype::f32;
  std::vector<std::int64_t> trailing_shape;

  // Bytes of one token row. Exact for any schema taken from a valid batch (validation rules out overflow);
  // wraps, never traps, for a hand-made schema that overflows.
  std::size_t row_bytes() const noexcept { return detail::row_bytes(dtype, trailing_shape); }
  friend bool operator==(const key_schema&, const key_schema&) = default;
};

namespace detail {

// "bf16[4, 2]": how messages name a key's type.
inline std::string schema_string(redist::dtype t, std::span<const std::int64_t> trailing) {
  return std::string(name(t)) + shape_text(trailing);
}

// Reserves room for `size` elements, at least doubling the capacity when it grows: one add() per rank must
// not copy everything gathered so far each time.
template <class T>
void reserve_geometric(std::vector<T>& v, std::size_t size) {
  if (size > v.capacity()) v.reserve(std::max(size, 2 * v.capacity()));
}

// Open addressing (linear probing, load <= 1/2) from sample id to an entry number: 4 bytes per slot instead
// of a node per id, and a lookup is one multiply and, almost always, one cache line. Fibonacci hashing
// spreads consecutive ids, the common case, over the whole table.
class id_index {
 public:
  static constexpr std::uint32_t empty = std::numeric_limits<std::uint32_t>::max();

  // The entry of `id`, or empty; id_of(entry) gives the id an entry was inserted with.
  template <class IdOf>
  std::uint32_t find(sample_id id, IdOf id_of) const noexcept {
    if (slots_.empty()) return empty;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t s = home(id);; s = (s + 1) & mask) {
      const std::uint32_t e = slots_[s];
      if (e == empty || id_of(e) == id) return e;
    }
  }

  // Makes room for `entries` entries in all, rehashing the first `existing` (entries 0..existing-1). The
  // index is unchanged if this throws.
  template <class IdOf>
  void reserve(std::size_t entries, std::size_t existing, IdOf id_of) {
    if (entries * 2 <= slots_.size()) return;
    std::size_t capacity = 16;
    while (capacity < entries * 2) capacity *= 2;
    id_index bigger;
    bigger.slots_.assign(capacity, empty);
    bigger.shift_ = 64 - std::countr_zero(capacity);
    for (std::size_t e = 0; e < existing; ++e)
      bigger.insert(id_of(static_cast<std::uint32_t>(e)), static_cast<std::uint32_t>(e));
    *this = std::move(bigger);
  }

  // Requires room (see reserve) and an id not yet present.
  void insert(sample_id id, std::uint32_t entry) noexcept {
    const std::size_t mask = slots_.size() - 1;
    std::size_t s = home(id);
    while (slots_[s] != empty) s = (s + 1) & mask;
    slots_[s] = entry;
  }

 private:
  std::size_t home(sample_id id) const noexcept {
    return static_cast<std::size_t>((id * 0x9E3779B97F4A7C15ull) >> shift_);
  }

  std::vector<std::uint32_t> slots_;  // entry numbers; size a power of two (or zero)
  int shift_ = 64;
};

}  // namespace detail

// Built from every rank's batch metadata, in the same rank order on every rank, so that every rank reports
// the same first conflict with the same words. Keys are indexed by their position in keys(), which is
// ascending by name: a later add() that brings a new key shifts the positions of the keys after it.
class catalog {
 public:
  // Records every (id, key) of `batch` (metadata suffices) as reported by `rank` (used only in messages).
  // A key's dtype and trailing shape must be the same everywhere; an (id, key) reported again must come with
  // the same seqlens. Checks come first (every key's schema in the batch's key order, then seqlens key by key
  // in id order), so the first conflict is the same on every rank; on error the catalog is unchanged. Spans
  // returned by seqlens() stay valid until the next add().
  template <class Tensor>
  void add(const sequence_batch<Tensor>& batch, int rank) {
    const auto& fields = batch.fields();
    const std::span<const sample_id> ids = batch.ids();

    // Check: schemas, then seqlens of pairs already known; count what is new.
    std::vector<std::optional<std::size_t>> known(fields.size());
    for (std::size_t f = 0; f < fields.size(); ++f) {
      const auto& fl = fields[f];
      known[f] = find_key(fl.name);
      if (!known[f]) continue;
      const key_schema& k = keys_[*known[f]];
      if (k.dtype != fl.dtype || k.trailing_shape != fl.trailing_shape)
        detail::fail("redist::catalog: key '", fl.name, "' is ",
                     detail::schema_string(k.dtype, k.trailing_shape), " on rank ",
                     tables_[*known[f]].first_rank, " but ",
                     detail::schema_string(fl.dtype, fl.trailing_shape), " on rank ", rank);
    }
    std::vector<std::size_t> fresh(fields.size(), 0), fresh_pool(fields.size(), 0);
    std::vector<bool> repeated(fields.size() * ids.size(), false);  // [f * ids + i]: known already
    for (std::size_t f = 0; f < fields.size(); ++f) {
      const auto& fl = fields[f];
      const table* t = known[f] ? &tables_[*known[f]] : nullptr;
      for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto lens = fl.seqlens[i];
        const std::uint32_t e = t ? t->find(ids[i]) : detail::id_index::empty;
        if (e == detail::id_index::empty) {
          ++fresh[f];
          if (lens.size() > 1) fresh_pool[f] += lens.size();
          continue;
        }
        repeated[f * ids.size() + i] = true;
        const auto have = t->lengths(t->entries[e]);
        if (!std::equal(have.begin(), have.end(), lens.begin(), lens.end()))
          detail::fail("redist::catalog: id ", ids[i], ", key '", fl.name, "': seqlens ",
                       detail::shape_text(have), " on rank ", t->entries[e].rank, " but ",
                       detail::shape_text(lens), " on rank ", rank);
      }
      const std::size_t before = t ? t->entries.size() : 0;
      if (fresh[f] > detail::id_index::empty - 1 - before)
        detail::fail("redist::catalog: key '", fl.name, "' has more than ", detail::id_index::empty - 1,
                     " ids");
    }

    // Prepare: every allocation, none of which changes what the catalog holds.
    std::vector<table> created;
    for (std::size_t f = 0; f < fields.size(); ++f) {
      table& t = known[f] ? tables_[*known[f]] : created.emplace_back();
      if (!known[f]) {
        t.first_rank = rank;
        t.row_bytes = detail::row_bytes(fields[f].dtype, fields[f].trailing_shape);
      }
      detail::reserve_geometric(t.entries, t.entries.size() + fresh[f]);
      detail::reserve_geometric(t.pool, t.pool.size() + fresh_pool[f]);
      t.index.reserve(t.entries.size() + fresh[f], t.entries.size(), t.id_of());
    }
    std::vector<key_schema> created_keys;
    created_keys.reserve(created.size());
    for (std::size_t f = 0; f < fields.size(); ++f)
      if (!known[f]) created_keys.push_back({fields[f].name, fields[f].dtype, fields[f].trailing_shape});
    keys_.reserve(keys_.size() + created.size());
    tables_.reserve(tables_.size() + created.size());

    // Commit: nothing below allocates or throws.
    std::size_t c = 0;
    for (std::size_t f = 0; f < fields.size(); ++f) {
      table& t = known[f] ? tables_[*known[f]] : created[c++];
      const auto& fl = fields[f];
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (!repeated[f * ids.size() + i]) t.append(ids[i], fl.seqlens[i], rank);
      }
      size_ += fresh[f];
    }
    for (std::size_t n = 0; n < created.size(); ++n) {
      auto at = std::lower_bound(keys_.begin(), keys_.end(), created_keys[n].name,
                                 [](const key_schema& k, const std::string& name) { return k.name < name; });
      const auto pos = at - keys_.begin();
      keys_.insert(at, std::move(created_keys[n]));
      tables_.insert(tables_.begin() + pos, std::move(created[n]));
    }
  }

  std::span<const key_schema> keys() const noexcept { return keys_; }  // ascending by name

  std::optional<std::size_t> find_key(std::string_view key) const noexcept {
    auto it = std::lower_bound(keys_.begin(), keys_.end(), key,
                               [](const key_schema& k, std::string_view name) { return k.name < name; });
    if (it == keys_.end() || it->name != key) return std::nullopt;
    return static_cast<std::size_t>(it - keys_.begin());
  }

  // `key` is a position in keys(); out of range means absent.
  bool has(sample_id id, std::size_t key) const noexcept {
    return key < tables_.size() && tables_[key].find(id) != detail::id_index::empty;
  }
  std::span<const std::int64_t> seqlens(sample_id id, std::size_t key) const {
    const table& t = tables_[check_key(key, "seqlens")];
    return t.lengths(t.entries[check_entry(id, key, "seqlens")]);
  }
  std::int64_t tokens(sample_id id, std::size_t key) const {
    const table& t = tables_[check_key(key, "tokens")];
    return t.entries[check_entry(id, key, "tokens")].tokens;
  }
  // tokens * row_bytes; fits, since the batch that brought the pair was validated against overflow.
  std::uint64_t bytes(sample_id id, std::size_t key) const {
    const table& t = tables_[check_key(key, "bytes")];
    return static_cast<std::uint64_t>(t.entries[check_entry(id, key, "bytes")].tokens) * t.row_bytes;
  }

  std::size_t size() const noexcept { return size_; }  // number of (id, key) entries

 private:
  // 32 bytes per entry. A single sequence, the common case, is its own token count: its seqlens span points
  // at `tokens` and the pool is not touched.
  struct entry {
    sample_id id;
    std::int64_t tokens;
    std::uint64_t begin;  // into pool, when count > 1
    std::uint32_t count;  // sequences
    int rank;             // the first to report it, for messages
  };

  struct table {
    int first_rank = 0;           // the first to report the key, for messages
    std::uint64_t row_bytes = 0;  // of the key's schema, cached for bytes()
    std::vector<entry> entries;
    std::vector<std::int64_t> pool;
    detail::id_index index;

    struct id_of_entry {
      const entry* entries;
      sample_id operator()(std::uint32_t e) const noexcept { return entries[e].id; }
    };
    id_of_entry id_of() const noexcept { return {entries.data()}; }
    std::uint32_t find(sample_id id) const noexcept { return index.find(id, id_of()); }
    std::span<const std::int64_t> lengths(const entry& e) const noexcept {
      if (e.count == 1) return {&e.tokens, 1};
      return {pool.data() + e.begin, e.count};
    }
    // Requires reserved room in entries, pool and index.
    void append(sample_id id, std::span<const std::int64_t> lens, int rank) noexcept {
      entry e{id, 0, pool.size(), static_cast<std::uint32_t>(lens.size()), rank};
      for (std::int64_t l : lens) e.tokens += l;  // validated batches do not overflow
      if (lens.size() > 1) pool.insert(pool.end(), lens.begin(), lens.end());
      entries.push_back(e);
      index.insert(id, static_cast<std::uint32_t>(entries.size() - 1));
    }
  };

  std::size_t check_key(std::size_t key, const char* fn) const {
    if (key >= keys_.size())
      detail::fail("redist::catalog::", fn, ": key position ", key, " is out of range for ", keys_.size(),
                   " keys");
    return key;
  }
  std::uint32_t check_entry(sample_id id, std::size_t key, const char* fn) const {
    const std::uint32_t e = tables_[key].find(id);
    if (e == detail::id_index::empty)
      detail::fail("redist::catalog::", fn, ": id ", id, " has no key '", keys_[key].name, "'");
    return e;
  }

  std::vector<key_schema> keys_;  // ascending by name
  std::vector<table> tables_;     // parallel to keys_
  std::size_t size_ = 0;
};

}  // namespace redist
