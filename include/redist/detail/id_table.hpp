// redist::detail::id_table: an open-addressing table from sample id to a small value, in one allocation, so
// that indexing a batch of n samples costs one allocation per key instead of n.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace redist::detail {

// Ids (redist::sample_id) are inserted and found, never erased. Only reserve() allocates, so a caller that
// reserves first inserts with nothing left to fail. At most half the entries are used: probes stay short.
template <class Value>
class id_table {
 public:
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  // Room for `more` ids beyond those held; the table is unchanged if this throws.
  void reserve(std::size_t more) {
    const std::size_t want = std::bit_ceil(2 * (size_ + more));
    if (want <= entries_.size()) return;
    std::vector<entry> grown(want);
    entries_.swap(grown);
    for (const entry& e : grown)
      if (e.used) place(e.id, e.value);
  }

  // Inserts an id not held yet, with room reserved.
  void insert(std::uint64_t id, const Value& value) noexcept {
    place(id, value);
    ++size_;
  }

  const Value* find(std::uint64_t id) const noexcept {
    if (entries_.empty()) return nullptr;
    for (std::size_t i = home(id);; i = (i + 1) & (entries_.size() - 1)) {
      const entry& e = entries_[i];
      if (!e.used) return nullptr;
      if (e.id == id) return &e.value;
    }
  }
  bool contains(std::uint64_t id) const noexcept { return find(id) != nullptr; }

  // f(id, value) for every id held, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (const entry& e : entries_)
      if (e.used) f(e.id, e.value);
  }

 private:
  struct entry {
    std::uint64_t id = 0;
    Value value{};
    bool used = false;
  };

  std::size_t home(std::uint64_t id) const noexcept {
    std::uint64_t h = id;  // splitmix64's finalizer: consecutive ids spread over the table
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<std::size_t>(h ^ (h >> 31)) & (entries_.size() - 1);
  }
  void place(std::uint64_t id, const Value& value) noexcept {
    std::size_t i = home(id);
    while (entries_[i].used) i = (i + 1) & (entries_.size() - 1);
    entries_[i] = entry{id, value, true};
  }

  std::vector<entry> entries_;  // a power of two in size, or empty
  std::size_t size_ = 0;
};

}  // namespace redist::detail
