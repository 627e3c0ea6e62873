// Test helper: splitmix64's finalizer and the keyed draws built on it, from which unit and MPI tests compute
// their contents and their expectations alike, independently of the code under test.
#pragma once

#include <cstddef>
#include <cstdint>

namespace redist::test {

// splitmix64's finalizer: a cheap bijection whose every output bit depends on every input bit.
inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) { return mix(mix(a) ^ b); }
inline std::uint64_t mix(std::uint64_t a, std::uint64_t b, std::uint64_t c) { return mix(mix(a, b) ^ c); }

// A deterministic draw every rank computes alike from the seed and up to three keys.
inline std::uint64_t draw(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0) {
  return mix(seed ^ a, b, c);
}

// The size of piece i of a drawn list, as a step's samples come: empty, a few bytes, 256 B, a few KiB, just
// over 16 KiB, or anything below `largest`.
inline std::size_t piece_size(std::uint64_t seed, std::size_t i, std::size_t largest) {
  const std::uint64_t r = draw(seed, i, 1);
  switch (r % 6) {
    case 0:
      return 0;
    case 1:
      return r % 17;
    case 2:
      return 256;
    case 3:
      return r % 5000;
    case 4:
      return 16384 + r % 100;
    default:
      return r % largest;
  }
}

}  // namespace redist::test
