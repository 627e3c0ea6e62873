// redist::storage_tracker: for every (sample id, key), its owner, its size in bytes and every rank holding a
// copy. Immutable once built; the planners read it. Built by storage_tracker::builder or from per-rank
// batches.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/core/sequence_batch.hpp"

namespace redist {

class storage_tracker {
 public:
  // Collects records in any order; build() sorts them, so the tracker does not depend on that order.
  class builder {
   public:
    explicit builder(int ranks) : ranks_(ranks) {
      if (ranks < 1) detail::fail("redist::storage_tracker: ", ranks, " ranks; there must be at least one");
    }

    // `rank` produced (id, key), `bytes` long: it owns it and holds it.
    builder& own(int rank, sample_id id, std::string_view key, std::uint64_t bytes) {
      const int r = check_rank(rank, "own");  // before key_code: a rejected record must leave no trace
      owned_.push_back({id, key_code(key), r, bytes});
      return *this;
    }
    // A key known even while no rank holds any sample of it (a batch with no samples still has its keys).
    builder& declare(std::string_view key) {
      key_code(key);
      return *this;
    }
    // `rank` holds a copy of (id, key), which some rank owns.
    builder& hold(int rank, sample_id id, std::string_view key) {
      const int r = check_rank(rank, "hold");
      held_.push_back({id, key_code(key), r, 0});
      return *this;
    }

    storage_tracker build() && { return storage_tracker(*this); }

   private:
    friend class storage_tracker;
    struct record {
      sample_id id;
      std::uint32_t key;  // code in first-seen order; build() renumbers by name
      int rank;
      std::uint64_t bytes;
    };

    int check_rank(int rank, const char* fn) const {
      if (rank < 0 || rank >= ranks_)
        detail::fail("redist::storage_tracker::builder::", fn, ": rank ", rank, " is out of range for ",
                     ranks_, " ranks");
      return rank;
    }
    std::uint32_t key_code(std::string_view key) {
      if (key.empty()) detail::fail("redist::storage_tracker::builder: empty key name");
      auto it = codes_.find(key);
      if (it == codes_.end())
        it = codes_.emplace(std::string(key), static_cast<std::uint32_t>(codes_.size())).first;
      return it->second;
    }

    int ranks_;
    std::map<std::string, std::uint32_t, std::less<>> codes_;
    std::vector<record> owned_, held_;
  };

  // Rank r holds batches[r] (metadata suffices). Each (id, key) is owned by the lowest rank holding it; every
  // holder must agree on its size.
  template <class Tensor>
  static storage_tracker from_batches(std::span<const sequence_batch<Tensor>> batches) {
    builder b(static_cast<int>(batches.size()));
    // Every (id, key, rank, bytes) there is, sorted: the first record of an (id, key) is its lowest holder.
    std::vector<record> all;
    std::vector<std::string_view> names;  // by key code
    for (std::size_t r = 0; r < batches.size(); ++r) {
      const auto& batch = batches[r];
      for (const auto& key : batch.keys()) {
        const std::uint32_t code = b.key_code(key);
        if (code == names.size()) names.push_back(key);
        for (std::size_t i = 0; i < batch.size(); ++i)
          all.push_back({batch.ids()[i], code, static_cast<int>(r), batch.sample_bytes(key, i).size});
      }
    }
    std::sort(all.begin(), all.end(), [](const record& x, const record& y) {
      return std::tie(x.id, x.key, x.rank) < std::tie(y.id, y.key, y.rank);
    });
    for (std::size_t n = 0, first = 0; n < all.size(); ++n) {
      const record& x = all[n];
      if (n == 0 || all[first].id != x.id || all[first].key != x.key) {
        first = n;
        b.owned_.push_back(x);
      } else if (all[first].bytes != x.bytes) {
        detail::fail("redist::storage_tracker::from_batches: ranks ", all[first].rank, " and ", x.rank,
                     " disagree on the size of id ", x.id, ", key '", names[x.key], "' (", all[first].bytes,
                     " and ", x.bytes, " bytes)");
      } else {
        b.held_.push_back({x.id, x.key, x.rank, 0});
      }
    }
    return std::move(b).build();
  }
  template <class Tensor>
  static storage_tracker from_batches(const std::vector<sequence_batch<Tensor>>& batches) {
    return from_batches(std::span<const sequence_batch<Tensor>>(batches));
  }

  int ranks() const noexcept { return ranks_; }
  std::span<const sample_id> ids() const noexcept { return ids_; }      // ascending
  std::span<const std::string> keys() const noexcept { return keys_; }  // ascending by name

  std::optional<std::size_t> find_id(sample_id id) const noexcept {
    auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
    if (it == ids_.end() || *it != id) return std::nullopt;
    return static_cast<std::size_t>(it - ids_.begin());
  }
  std::optional<std::size_t> find_key(std::string_view key) const noexcept {
    auto it = std::lower_bound(keys_.begin(), keys_.end(), key);
    if (it == keys_.end() || *it != key) return std::nullopt;
    return static_cast<std::size_t>(it - keys_.begin());
  }

  // Indexed by (position in ids(), position in keys()).
  bool has(std::size_t id, std::size_t key) const noexcept { return owner_[entry(id, key)] >= 0; }
  int owner(std::size_t id, std::size_t key) const noexcept { return owner_[entry(id, key)]; }
  std::uint64_t bytes(std::size_t id, std::size_t key) const noexcept { return bytes_[entry(id, key)]; }
  std::span<const int> holders(std::size_t id, std::size_t key) const noexcept {  // ascending, owner included
    const std::size_t e = entry(id, key);
    return {holders_.data() + holder_begin_[e], holder_begin_[e + 1] - holder_begin_[e]};
  }
  bool holds(int rank, std::size_t id, std::size_t key) const noexcept {
    const auto h = holders(id, key);
    return std::binary_search(h.begin(), h.end(), rank);
  }

  // Every (id position, key position) that `rank` holds, in (id, key) order.
  std::vector<std::pair<std::size_t, std::size_t>> held_by(int rank) const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (std::size_t i = 0; i < ids_.size(); ++i)
      for (std::size_t k = 0; k < keys_.size(); ++k)
        if (holds(rank, i, k)) out.emplace_back(i, k);
    return out;
  }

 private:
  using record = builder::record;

  explicit storage_tracker(builder& b) : ranks_(b.ranks_) {
    // Renumber keys by name so the tracker is the same whatever order they were first seen in.
    std::vector<std::uint32_t> renumber(b.codes_.size());
    for (const auto& [name, code] : b.codes_) {
      renumber[code] = static_cast<std::uint32_t>(keys_.size());
      keys_.push_back(name);
    }
    // Sizes take part so that a conflict is reported the same way whatever the record order.
    auto by_entry = [](const record& x, const record& y) {
      return std::tie(x.id, x.key, x.rank, x.bytes) < std::tie(y.id, y.key, y.rank, y.bytes);
    };
    for (auto* list : {&b.owned_, &b.held_}) {
      for (auto& r : *list) r.key = renumber[r.key];
      std::sort(list->begin(), list->end(), by_entry);
    }
    for (const auto& r : b.owned_)
      if (ids_.empty() || ids_.back() != r.id) ids_.push_back(r.id);

    const std::size_t entries = ids_.size() * keys_.size();
    owner_.assign(entries, -1);
    bytes_.assign(entries, 0);
    std::vector<std::uint32_t> count(entries, 0);
    std::size_t i = 0;
    for (std::size_t n = 0; n < b.owned_.size(); ++n) {
      const record& r = b.owned_[n];
      while (ids_[i] != r.id) ++i;
      const std::size_t e = entry(i, r.key);
      if (owner_[e] >= 0 && owner_[e] != r.rank)
        detail::fail("redist::storage_tracker: id ", r.id, ", key '", keys_[r.key], "' is owned by ranks ",
                     owner_[e], " and ", r.rank);
      if (owner_[e] >= 0 && bytes_[e] != r.bytes)
        detail::fail("redist::storage_tracker: id ", r.id, ", key '", keys_[r.key], "' was recorded with ",
                     bytes_[e], " and ", r.bytes, " bytes");
      if (owner_[e] < 0) ++count[e];
      owner_[e] = r.rank;
      bytes_[e] = r.bytes;
    }
    // Holders per entry: the owner, then every held record, merged in rank order without duplicates.
    std::vector<std::size_t> held_entry(b.held_.size());
    for (std::size_t n = 0; n < b.held_.size(); ++n) {
      const record& r = b.held_[n];
      const auto id = find_id(r.id);
      const std::size_t e = id ? entry(*id, r.key) : 0;
      if (!id || owner_[e] < 0)
        detail::fail("redist::storage_tracker: rank ", r.rank, " holds id ", r.id, ", key '", keys_[r.key],
                     "', which no rank owns");
      held_entry[n] = e;
      const bool repeat = n > 0 && held_entry[n - 1] == e && b.held_[n - 1].rank == r.rank;
      if (r.rank != owner_[e] && !repeat) ++count[e];
    }
    holder_begin_.assign(entries + 1, 0);
    for (std::size_t e = 0; e < entries; ++e) holder_begin_[e + 1] = holder_begin_[e] + count[e];
    holders_.resize(holder_begin_[entries]);
    std::vector<std::size_t> fill(holder_begin_.begin(), holder_begin_.end() - 1);
    for (std::size_t e = 0; e < entries; ++e)
      if (owner_[e] >= 0) holders_[fill[e]++] = owner_[e];
    for (std::size_t n = 0; n < b.held_.size(); ++n) {
      const std::size_t e = held_entry[n];
      const int rank = b.held_[n].rank;
      const bool repeat = n > 0 && held_entry[n - 1] == e && b.held_[n - 1].rank == rank;
      if (rank != owner_[e] && !repeat) holders_[fill[e]++] = rank;
    }
    for (std::size_t e = 0; e < entries; ++e)
      std::sort(holders_.begin() + static_cast<std::ptrdiff_t>(holder_begin_[e]),
                holders_.begin() + static_cast<std::ptrdiff_t>(holder_begin_[e + 1]));
  }

  std::size_t entry(std::size_t id, std::size_t key) const noexcept { return id * keys_.size() + key; }

  int ranks_;
  std::vector<sample_id> ids_;
  std::vector<std::string> keys_;
  std::vector<int> owner_;                 // per entry; -1: this id has no such key
  std::vector<std::uint64_t> bytes_;       // per entry
  std::vector<std::size_t> holder_begin_;  // per entry + 1, into holders_
  std::vector<int> holders_;
};

}  // namespace redist
