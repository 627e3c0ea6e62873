// redist::detail::fingerprint: the one 64-bit hash of the library. It serves the agreement checks (every rank
// hashes what must be the same everywhere, and an allgather compares the results) and the hash tables that
// intern id lists, payloads and rank sets. It is FNV-1a's multiply applied to 64-bit words rather than bytes:
// a value costs one multiply, and a string one multiply per 8 characters. It is the same on every rank of
// any byte order, for the same values added in the same order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace redist::detail {

class fingerprint {
 public:
  constexpr fingerprint& add(std::uint64_t v) noexcept {
    h_ = (h_ ^ v) * prime;
    return *this;
  }

  // The characters 8 at a time (little-endian words, whatever the machine's order), then the length, so that
  // "ab" then "c" and "a" then "bc" differ.
  constexpr fingerprint& add(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size(); i += 8) {
      std::uint64_t word = 0;
      for (std::size_t k = 0; k < 8 && i + k < s.size(); ++k)
        word |= std::uint64_t{static_cast<unsigned char>(s[i + k])} << (8 * k);
      add(word);
    }
    return add(s.size());
  }

  // Each value of a range (integers or strings), then the count.
  template <class Range>
  constexpr fingerprint& add_all(const Range& values) noexcept {
    std::uint64_t count = 0;
    for (const auto& v : values) {
      if constexpr (std::is_convertible_v<decltype(v), std::string_view>) {
        add(std::string_view(v));
      } else {
        add(static_cast<std::uint64_t>(v));
      }
      ++count;
    }
    return add(count);
  }

  constexpr std::uint64_t value() const noexcept { return h_; }

 private:
  static constexpr std::uint64_t prime = 0x100000001b3ull;
  std::uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace redist::detail
