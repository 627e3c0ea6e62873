// redistribute()'s end-to-end checksums (redistribute_options::checksums): the CRC-32C of every (id, key)
// payload a rank gives, allgathered before any byte moves, and of every payload where it lands, after.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/crc32c.hpp"
#include "redist/detail/text.hpp"
#include "redist/plan/steps.hpp"

namespace redist::detail {

// One payload's checksum as it travels in the allgather: key is its position in the catalog's keys.
struct payload_checksum {
  sample_id id;
  std::uint32_t key;
  std::uint32_t crc;
};
static_assert(sizeof(payload_checksum) == 16);

// The CRC-32C of the bytes of (ids()[position], key) in `b`.
template <class Tensor>
std::uint32_t payload_crc(const sequence_batch<Tensor>& b, std::size_t position, std::string_view key) {
  const byte_range r = b.sample_bytes(key, position);
  const auto* base = static_cast<const std::byte*>(tensor_traits<Tensor>::data(b.data(key)));
  return crc32c(0, base + r.offset, r.size);
}

inline std::string crc_text(std::uint32_t crc) {
  constexpr char digits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) s += digits[(crc >> shift) & 0xf];
  return s;
}

// Every rank's checksums, each payload's once its copies agree: what a payload must carry when it lands.
class checksum_book {
 public:
  // From every rank's table as the allgather returned them (tables[r] of rank r). A payload given from the
  // copies of several ranks must have one checksum: problem() names the first that does not, and how many.
  checksum_book(std::span<const std::vector<payload_checksum>> tables, const catalog& cat) {
    for (std::size_t r = 0; r < tables.size(); ++r)
      for (const auto& c : tables[r]) entries_.push_back({c.id, c.key, static_cast<int>(r), c.crc});
    std::sort(entries_.begin(), entries_.end(), [](const entry& a, const entry& b) {
      return std::tie(a.id, a.key, a.rank) < std::tie(b.id, b.key, b.rank);
    });
    std::size_t differ = 0;
    for (std::size_t i = 1; i < entries_.size(); ++i) {
      const entry &first = *first_of(i), &e = entries_[i];
      if (e.crc == first.crc) continue;
      if (differ++ == 0) {
        problem_ =
            str("redist::redistribute: checksums: id ", e.id, ", key '", cat.keys()[e.key].name,
                "' differs between its copies: rank ", first.rank, " holds CRC32C ", crc_text(first.crc),
                ", rank ", e.rank, " holds ", crc_text(e.crc), " (replicas must carry equal bytes)");
      }
    }
    if (differ > 1) problem_ += str(" (", differ - 1, " more copies differ)");
  }

  const std::string& problem() const noexcept { return problem_; }

  // The checksum (id, key) carries, if some rank holds it.
  const std::uint32_t* find(sample_id id, std::uint32_t key) const noexcept {
    const auto it = std::lower_bound(entries_.begin(), entries_.end(), std::tuple(id, key),
                                     [](const entry& e, const std::tuple<sample_id, std::uint32_t>& k) {
                                       return std::tie(e.id, e.key) < k;
                                     });
    return it != entries_.end() && it->id == id && it->key == key ? &it->crc : nullptr;
  }

 private:
  struct entry {
    sample_id id;
    std::uint32_t key;
    int rank;
    std::uint32_t crc;
  };
  const entry* first_of(std::size_t i) const noexcept {
    while (i > 0 && entries_[i - 1].id == entries_[i].id && entries_[i - 1].key == entries_[i].key) --i;
    return &entries_[i];
  }
  std::vector<entry> entries_;
  std::string problem_;
};

// Calls f(id, key position, from) for every pair the plan moves from another rank to `rank`.
template <class F>
void for_each_arrival(int rank, const plan& p, const catalog& cat, F&& f) {
  for (const auto& stage : p.stages)
    for (const auto& s : stage)
      for_each_transfer(
          s,
          [&](const step_transfer& t) {
            if (t.dst != rank || t.src == rank) return;
            const auto& keys = keys_of(s);
            for (std::uint32_t i = t.first_key; i < t.first_key + t.key_count; ++i)
              if (const auto k = cat.find_key(keys[i]))
                for (const sample_id id : *t.ids) f(id, *k, t.src);
          },
          [](const std::string&) {});
}

// This rank's table: the checksum of every payload a consumer gets from this rank's copy, as the store held
// it before the transfer: those the plan has it send to another rank (relayed ones excepted: they are
// checked where they arrive) and those it keeps for its own output. Copies nobody is given are not read.
template <class Tensor>
std::vector<payload_checksum> given_checksums(int rank, const plan& p, const catalog& cat,
                                              const sample_store<Tensor>& store,
                                              const sequence_batch<Tensor>* out) {
  std::vector<std::pair<sample_id, std::size_t>> given;
  for (const auto& stage : p.stages)
    for (const auto& s : stage)
      for_each_transfer(
          s,
          [&](const step_transfer& t) {
            if (t.src != rank || t.dst == rank) return;
            const auto& keys = keys_of(s);
            for (std::uint32_t i = t.first_key; i < t.first_key + t.key_count; ++i)
              if (const auto k = cat.find_key(keys[i]))
                for (const sample_id id : *t.ids) given.emplace_back(id, *k);
          },
          [](const std::string&) {});
  if (out != nullptr)
    for (const auto& f : out->fields())
      if (const auto k = cat.find_key(f.name))
        for (const sample_id id : out->ids()) given.emplace_back(id, *k);
  std::sort(given.begin(), given.end());
  given.erase(std::unique(given.begin(), given.end()), given.end());
  std::vector<payload_checksum> table;
  table.reserve(given.size());
  for (const auto& [id, k] : given) {
    const std::string& key = cat.keys()[k].name;
    if (const auto at = store.find(id, key))
      table.push_back({id, static_cast<std::uint32_t>(k), payload_crc(*at->batch, at->position, key)});
  }
  return table;
}

// Every rank's table, from one allgather.
template <class Comm>
std::vector<std::vector<payload_checksum>> gather_checksums(const Comm& comm,
                                                            const std::vector<payload_checksum>& mine) {
  std::vector<std::size_t> counts;
  const std::vector<std::byte> all = redist::allgatherv(comm, std::as_bytes(std::span(mine)), &counts);
  std::vector<std::vector<payload_checksum>> tables(counts.size());
  for (std::size_t r = 0, at = 0; r < counts.size(); at += counts[r], ++r) {
    tables[r].resize(counts[r] / sizeof(payload_checksum));
    host_space::copy(reinterpret_cast<std::byte*>(tables[r].data()), all.data() + at, counts[r]);
  }
  return tables;
}

// This rank's problem after the transfer: the first payload that arrived here (from another rank, by the
// plan) whose bytes, where they landed (in `out` when it has them, else in the store), do not have the
// checksum its sender computed; empty when every one does.
template <class Tensor>
std::string check_arrivals(int rank, const plan& p, const catalog& cat, const checksum_book& book,
                           const sample_store<Tensor>& store, const sequence_batch<Tensor>* out) {
  std::string problem;
  std::size_t differ = 0;
  for_each_arrival(rank, p, cat, [&](sample_id id, std::size_t k, int from) {
    const std::string& key = cat.keys()[k].name;
    const std::uint32_t* expected = book.find(id, static_cast<std::uint32_t>(k));
    std::uint32_t got = 0;
    if (const auto pos = out != nullptr && out->has_key(key) ? out->find(id) : std::nullopt) {
      got = payload_crc(*out, *pos, key);
    } else if (const auto at = store.find(id, key)) {
      got = payload_crc(*at->batch, at->position, key);
    } else {
      return;  // not kept here: relayed on
    }
    if (expected == nullptr || got == *expected) return;
    if (differ++ == 0) {
      problem = str("redist::redistribute: checksums: id ", id, ", key '", key, "' arrived on rank ", rank,
                    " from rank ", from, " with CRC32C ", crc_text(got), " where its sender computed ",
                    crc_text(*expected));
    }
  });
  if (differ > 1) problem += str(" (", differ - 1, " more payloads arrived changed)");
  return problem;
}

}  // namespace redist::detail
