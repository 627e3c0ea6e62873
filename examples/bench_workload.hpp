// The workload of the redistribute benchmarks (host and device): three keys of lognormal lengths whose values
// are pure functions of (seed, id, key, element), and the layouts of who produces and who wants which ids.
// A benchmark's config supplies samples (per rank), mean_tokens, sigma and seed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/sequence_batch.hpp"

namespace redist::bench {

inline std::uint64_t draw(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0) {
  return mix(mix(seed ^ a) ^ b);
}

struct key_spec {
  const char* name;
  dtype type;
  std::int64_t width;  // 0: trailing shape {}, else {width}
  std::size_t elements_per_token() const { return width == 0 ? 1 : static_cast<std::size_t>(width); }
  std::size_t row_bytes() const { return size_of(type) * elements_per_token(); }
  std::vector<std::int64_t> trailing() const {
    return width == 0 ? std::vector<std::int64_t>{} : std::vector<std::int64_t>{width};
  }
};
// Ascending by name: the order in which redistribute() returns them.
inline const key_spec keys[] = {
    {"hidden", dtype::bf16, 16}, {"logits", dtype::bf16, 0}, {"tokens", dtype::i64, 0}};
inline constexpr std::size_t key_count = std::size(keys);

inline std::size_t bytes_per_token() {
  std::size_t n = 0;
  for (const auto& k : keys) n += k.row_bytes();
  return n;
}

// Lognormal token counts: mu = ln(mean) - sigma^2 / 2 makes the mean `mean_tokens`. Box-Muller on two
// uniform draws of the id's hash.
template <class Config>
std::int64_t tokens_of(const Config& c, sample_id id) {
  const double u1 = (static_cast<double>(draw(c.seed, id, 1) >> 11) + 0.5) * 0x1p-53;
  const double u2 = static_cast<double>(draw(c.seed, id, 2) >> 11) * 0x1p-53;
  const double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2);
  const double mu = std::log(c.mean_tokens) - c.sigma * c.sigma / 2;
  return std::max<std::int64_t>(1, std::llround(std::exp(mu + c.sigma * z)));
}
template <class Config>
std::size_t key_bytes(const Config& c, sample_id id, std::size_t k) {
  return static_cast<std::size_t>(tokens_of(c, id)) * keys[k].row_bytes();
}

// The bytes of key k of sample id (of `tokens` tokens): bf16 values in [0.5, 1) with either sign (finite, so
// exact through float32) and integers below 2^24 (exact in float32): the float32-staged path must deliver the
// same bytes.
template <class Config>
void expected_bytes(const Config& c, sample_id id, std::size_t k, std::int64_t tokens, std::byte* out) {
  const key_spec& key = keys[k];
  const std::size_t n = static_cast<std::size_t>(tokens) * key.elements_per_token();
  const std::uint64_t base = draw(c.seed, id, 100 + k);
  if (key.type == dtype::bf16) {
    for (std::size_t e = 0; e < n; ++e) {
      const auto bits = static_cast<std::uint16_t>((mix(base ^ e) & 0x807F) | 0x3F00);
      std::memcpy(out + 2 * e, &bits, 2);
    }
  } else {
    for (std::size_t e = 0; e < n; ++e) {
      const auto v = static_cast<std::int64_t>(mix(base ^ e) & 0xFFFFFF);
      std::memcpy(out + 8 * e, &v, 8);
    }
  }
}

// Who produces which ids and who wants which, in which order. Every rank computes every rank's lists.
struct layout {
  std::string name;
  std::string order;       // "arrival": the consumer asks in arrival order; "shuffled": it must be reordered
  std::vector<int> owner;  // per id
  std::vector<std::vector<sample_id>> produced;  // per rank, in production order
  std::vector<std::vector<sample_id>> wanted;    // per rank, in the consumer's order
};

// blocks: rank r produces a contiguous block of ids, and consumer c wants the ids c, c + P, c + 2P, ... so
// every rank sends to every rank; it asks in arrival order (by source rank, each source's ids in its order).
// reordered: the same, each consumer asking in a shuffled order. skewed: rank 0 produces half of all ids and
// every rank (rank 0 too) an equal share of the other half, so rank 0 holds (P+1)/2P of the data; consumers
// want the same balanced round-robin split as in blocks, in arrival order.
template <class Config>
layout make_layout(const std::string& kind, int ranks, const Config& c) {
  const auto P = static_cast<std::size_t>(ranks);
  const std::size_t N = c.samples * P;
  layout l;
  l.name = kind;
  l.order = kind == "reordered" ? "shuffled" : "arrival";
  l.owner.resize(N);
  l.produced.resize(P);
  l.wanted.resize(P);
  std::vector<std::size_t> first(P + 1, 0);
  if (kind == "skewed") {
    const std::size_t rest = N - N / 2;
    for (std::size_t r = 0; r < P; ++r)
      first[r + 1] = first[r] + (r == 0 ? N / 2 : 0) + rest / P + (r < rest % P ? 1 : 0);
  } else {
    for (std::size_t r = 0; r < P; ++r) first[r + 1] = first[r] + c.samples;
  }
  for (std::size_t r = 0; r < P; ++r)
    for (std::size_t i = first[r]; i < first[r + 1]; ++i) {
      l.owner[i] = static_cast<int>(r);
      l.produced[r].push_back(i);
    }
  for (std::size_t s = 0; s < P; ++s)
    for (sample_id id : l.produced[s]) l.wanted[id % P].push_back(id);
  if (kind == "reordered")
    for (std::size_t r = 0; r < P; ++r) {
      auto& w = l.wanted[r];
      for (std::size_t i = w.size(); i > 1; --i) std::swap(w[i - 1], w[draw(c.seed, 7 + r, i) % i]);
    }
  return l;
}

}  // namespace redist::bench
