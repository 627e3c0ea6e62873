// redist::dtype: the ten element types a key's tensor may hold, their sizes and names.
// Host conversions between f16/bf16 and f32 and the per-value f32 round-trip tests live here too.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

#include "redist/core/error.hpp"
#include "redist/detail/host_device.hpp"

namespace redist {

enum class dtype : std::uint8_t { f32, f64, f16, bf16, i8, i16, i32, i64, u8, boolean };

inline constexpr std::size_t dtype_count = 10;

constexpr std::size_t size_of(dtype t) noexcept {
  switch (t) {
    case dtype::f64:
    case dtype::i64:
      return 8;
    case dtype::f32:
    case dtype::i32:
      return 4;
    case dtype::f16:
    case dtype::bf16:
    case dtype::i16:
      return 2;
    case dtype::i8:
    case dtype::u8:
    case dtype::boolean:
      return 1;
  }
  return 0;
}

constexpr std::string_view name(dtype t) noexcept {
  switch (t) {
    case dtype::f32:
      return "f32";
    case dtype::f64:
      return "f64";
    case dtype::f16:
      return "f16";
    case dtype::bf16:
      return "bf16";
    case dtype::i8:
      return "i8";
    case dtype::i16:
      return "i16";
    case dtype::i32:
      return "i32";
    case dtype::i64:
      return "i64";
    case dtype::u8:
      return "u8";
    case dtype::boolean:
      return "bool";
  }
  return "?";
}

namespace detail {

// Out of line so that dtype_from_name stays usable in constant expressions for valid names.
[[noreturn]] inline void unknown_dtype_name(std::string_view s) {
  std::string valid;
  for (std::size_t i = 0; i < dtype_count; ++i) {
    if (i != 0) valid += ", ";
    valid += name(static_cast<dtype>(i));
  }
  fail("redist::dtype_from_name: unknown dtype name '", s, "'; valid names are ", valid);
}

}  // namespace detail

// The inverse of name(): exact, case-sensitive match ("bool", not "boolean").
constexpr dtype dtype_from_name(std::string_view s) {
  for (std::size_t i = 0; i < dtype_count; ++i) {
    if (name(static_cast<dtype>(i)) == s) return static_cast<dtype>(i);
  }
  detail::unknown_dtype_name(s);
}

constexpr bool is_floating(dtype t) noexcept {
  return t == dtype::f32 || t == dtype::f64 || t == dtype::f16 || t == dtype::bf16;
}

// boolean counts as integral, as std::is_integral_v<bool> does: every dtype is exactly one of the two kinds.
constexpr bool is_integral(dtype t) noexcept { return !is_floating(t); }

// Storage-only 16-bit floats: the bits as they sit in memory, no arithmetic. Equality compares bits, so
// +0 != -0 and a NaN equals itself; convert to float for value semantics.
struct f16 {
  std::uint16_t bits;
  friend constexpr bool operator==(f16, f16) noexcept = default;
};

struct bf16 {
  std::uint16_t bits;
  friend constexpr bool operator==(bf16, bf16) noexcept = default;
};

static_assert(sizeof(f16) == 2 && std::is_trivially_copyable_v<f16>);
static_assert(sizeof(bf16) == 2 && std::is_trivially_copyable_v<bf16>);

namespace detail {

template <class>
inline constexpr bool dependent_false = false;

template <class T>
struct dtype_of_impl {
  static_assert(dependent_false<T>, "redist::dtype_of<T>: T is not one of redist's ten element types");
  static constexpr dtype value = dtype::f32;
};

template <dtype D>
struct dtype_constant {
  static constexpr dtype value = D;
};

template <>
struct dtype_of_impl<float> : dtype_constant<dtype::f32> {};
template <>
struct dtype_of_impl<double> : dtype_constant<dtype::f64> {};
template <>
struct dtype_of_impl<f16> : dtype_constant<dtype::f16> {};
template <>
struct dtype_of_impl<bf16> : dtype_constant<dtype::bf16> {};
template <>
struct dtype_of_impl<std::int8_t> : dtype_constant<dtype::i8> {};
template <>
struct dtype_of_impl<std::int16_t> : dtype_constant<dtype::i16> {};
template <>
struct dtype_of_impl<std::int32_t> : dtype_constant<dtype::i32> {};
template <>
struct dtype_of_impl<std::int64_t> : dtype_constant<dtype::i64> {};
template <>
struct dtype_of_impl<std::uint8_t> : dtype_constant<dtype::u8> {};
template <>
struct dtype_of_impl<bool> : dtype_constant<dtype::boolean> {};

}  // namespace detail

// The dtype of an element type; cv-qualifiers are ignored (a const view holds the same elements). Only the
// exact fixed-width types map: char, long long (int64_t is long on LP64 Linux) or uint16_t do not compile.
template <class T>
inline constexpr dtype dtype_of = detail::dtype_of_impl<std::remove_cv_t<T>>::value;

// NaNs come out quiet with their sign and the top bits of their payload: a signalling NaN would trap or be
// quietened by the first arithmetic anyway, and never turning a NaN into an infinity matters more.
constexpr float f16_to_f32(f16 h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
  const std::uint32_t exp = (h.bits >> 10) & 0x1fu;
  const std::uint32_t mant = h.bits & 0x3ffu;
  std::uint32_t out = sign;
  if (exp == 0x1f) {
    out |= 0x7f800000u | (mant << 13) | (mant != 0 ? 0x00400000u : 0u);
  } else if (exp != 0) {
    out |= ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant != 0) {
    // Subnormal mant * 2^-24 is a normal float: move the leading one out to the implicit bit.
    const auto top = static_cast<std::uint32_t>(std::bit_width(mant)) - 1;  // 0..9
    out |= ((top + 103) << 23) | ((mant << (23 - top)) & 0x7fffffu);
  }
  return std::bit_cast<float>(out);
}

constexpr f16 f32_to_f16(float f) noexcept {
  const auto x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  std::uint32_t out;
  if (ax > 0x7f800000u) {
    out = 0x7e00u | ((ax >> 13) & 0x3ffu);
  } else if (ax >= 0x477ff000u) {
    out = 0x7c00u;  // >= 65520, halfway from 65504 to 2^16, rounds to even 2^16 = Inf; and Inf itself
  } else if (ax >= 0x38800000u) {
    // Normal: drop 13 mantissa bits; a carry out of the mantissa bumps the exponent, which is right.
    out = (ax >> 13) - (112u << 10);
    const std::uint32_t rest = ax & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (out & 1u) != 0)) ++out;
  } else if (ax > 0x33000000u) {
    // Subnormal result (2^-25 < |f| < 2^-14): mant = |f| / 2^-24 rounded; 2^-25 itself is a tie to 0.
    const std::uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - (ax >> 23);  // 14..24
    out = m >> shift;
    const std::uint32_t rest = m & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (out & 1u) != 0)) ++out;  // may carry into the smallest normal
  } else {
    out = 0;
  }
  return f16{static_cast<std::uint16_t>(sign | out)};
}

constexpr float bf16_to_f32(bf16 h) noexcept {
  std::uint32_t out = static_cast<std::uint32_t>(h.bits) << 16;
  if ((out & 0x7fffffffu) > 0x7f800000u) out |= 0x00400000u;
  return std::bit_cast<float>(out);
}

constexpr bf16 f32_to_bf16(float f) noexcept {
  const auto x = std::bit_cast<std::uint32_t>(f);
  // Truncating a NaN whose payload sits in the low 16 bits would give Inf: set the quiet bit instead.
  if ((x & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<std::uint16_t>((x >> 16) | 0x0040u)};
  // Round to nearest even in integer arithmetic; carries ripple into the exponent and up to Inf correctly.
  const std::uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
  return bf16{static_cast<std::uint16_t>(rounded >> 16)};
}

namespace detail {

// An integer fits a float exactly when its magnitude's set bits span at most 24 positions, i.e.
// |v| < lowest_set_bit * 2^24. Written without branches so that the scan loops vectorize; for |v| == 0 the
// right side wraps to all ones.
template <class Signed>
REDIST_HOST_DEVICE constexpr bool int_survives_f32(Signed v) noexcept {
  using U = std::make_unsigned_t<Signed>;
  const U u = v < 0 ? static_cast<U>(U{0} - static_cast<U>(v)) : static_cast<U>(v);
  return static_cast<U>(u >> 24) <= static_cast<U>(static_cast<U>(u & static_cast<U>(U{0} - u)) - U{1});
}

// A double out of float range is not converted (the standard leaves that cast undefined), so it is swapped
// for 0 before the cast and decided by the range test alone: infinities survive, large finite values do not.
REDIST_HOST_DEVICE inline bool f64_survives_f32(double x) noexcept {
  constexpr double float_max = static_cast<double>(std::numeric_limits<float>::max());
  const double a = std::fabs(x);
  const bool in_range = a <= float_max;
  const double y = in_range ? x : 0.0;
  const bool round_trips = static_cast<double>(static_cast<float>(y)) == y;
  return (in_range & round_trips) | (a == std::numeric_limits<double>::infinity()) | (x != x);
}

}  // namespace detail

}  // namespace redist
