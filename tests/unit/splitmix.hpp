// Test helper: splitmix64's finalizer and the keyed draws built on it, from which unit and MPI tests compute
// their contents and their expectations alike, independently of the code under test.
#pragma once

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

}  // namespace redist::test
