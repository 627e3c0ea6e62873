// Overflow-checked integer arithmetic for sizes computed from user metadata.
// Each returns false on overflow instead of wrapping, so callers can report which key or id overflowed.
#pragma once

#include <concepts>

namespace redist::detail {

template <std::integral T>
[[nodiscard]] constexpr bool checked_add(T a, T b, T& out) noexcept {
  return !__builtin_add_overflow(a, b, &out);
}

template <std::integral T>
[[nodiscard]] constexpr bool checked_mul(T a, T b, T& out) noexcept {
  return !__builtin_mul_overflow(a, b, &out);
}

}  // namespace redist::detail
