// Tests for redist::dtype: sizes, names, dtype_of, the f16/bf16 conversions (exhaustive over 16-bit patterns,
// swept over f32 patterns against a reference computed with double arithmetic) and the float32 survival
// check.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cfenv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/memory_space.hpp"

namespace {

using redist::dtype;

constexpr std::uint32_t bits_of(float f) { return std::bit_cast<std::uint32_t>(f); }
constexpr float float_of(std::uint32_t u) { return std::bit_cast<float>(u); }

// ---- Independent references: values built with ldexp, rounding done by std::nearbyint in double. ----

double ref_f16_value(std::uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
  if (exp == 0x1f) return mant == 0 ? sign * HUGE_VAL : std::copysign(std::nan(""), sign);
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

double ref_bf16_value(std::uint16_t h) {
  const int exp = (h >> 7) & 0xff;
  const int mant = h & 0x7f;
  const double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
  if (exp == 0xff) return mant == 0 ? sign * HUGE_VAL : std::copysign(std::nan(""), sign);
  if (exp == 0) return sign * std::ldexp(mant, -133);
  return sign * std::ldexp(128 + mant, exp - 134);
}

// Rounds |a| (finite, > 0) to `digits` significant bits with quantum never below 2^min_quantum_exp.
double ref_round(double a, int digits, int min_quantum_exp) {
  const int q = std::max(std::ilogb(a) - (digits - 1), min_quantum_exp);
  return std::ldexp(std::nearbyint(std::ldexp(a, -q)), q);  // FE_TONEAREST: ties to even
}

// Non-NaN input only.
std::uint16_t ref_f32_to_f16(float f) {
  const std::uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (a == 0) return sign;
  if (std::isinf(a)) return sign | 0x7c00;
  const double r = ref_round(a, 11, -24);
  if (r >= 65536.0) return sign | 0x7c00;
  if (r == 0) return sign;
  if (r < std::ldexp(1.0, -14)) return static_cast<std::uint16_t>(sign | static_cast<int>(std::ldexp(r, 24)));
  const int e = std::ilogb(r);
  const int mant = static_cast<int>(std::ldexp(std::ldexp(r, -e) - 1.0, 10));
  return static_cast<std::uint16_t>(sign | ((e + 15) << 10) | mant);
}

// Non-NaN input only. The rounded value is exactly a float whose low 16 bits are zero.
std::uint16_t ref_f32_to_bf16(float f) {
  const std::uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (a == 0) return sign;
  if (std::isinf(a)) return sign | 0x7f80;
  const double r = ref_round(a, 8, -133);
  if (r >= std::ldexp(1.0, 128)) return sign | 0x7f80;
  const std::uint32_t u = bits_of(static_cast<float>(r));
  if ((u & 0xffffu) != 0) throw std::logic_error("ref_f32_to_bf16: rounded value is not a bf16");
  return static_cast<std::uint16_t>(sign | (u >> 16));
}

bool f16_is_quiet_nan(std::uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x0200) != 0; }
bool bf16_is_quiet_nan(std::uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x0040) != 0; }
bool f32_is_quiet_nan(float f) { return std::isnan(f) && (bits_of(f) & 0x00400000u) != 0; }

// Exactly representable in float, found by conversion (guarding the 2^63 case the cast back cannot take).
bool ref_int_survives(std::int64_t v) {
  const float f = static_cast<float>(v);
  if (f >= 0x1p63f) return false;
  return static_cast<std::int64_t>(f) == v;
}

// A double survives when it is NaN, infinite, or its significand fits float's precision at its exponent.
bool ref_f64_survives(double x) {
  if (std::isnan(x) || std::isinf(x) || x == 0) return true;
  int e = 0;
  const double m = std::frexp(std::fabs(x), &e);  // |x| = m * 2^e, m in [0.5, 1)
  if (e > 128) return false;
  const int frac_bits = e - 1 >= -126 ? 24 : e + 149;  // float subnormals have a fixed quantum 2^-149
  if (frac_bits <= 0) return false;
  const double scaled = std::ldexp(m, frac_bits);
  return scaled == std::trunc(scaled);
}

template <class T>
bool survives(T v) {
  return redist::survives_f32(redist::dtype_of<T>, &v);
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// The f32 patterns the conversion sweep runs over: a strided pass through all 2^32 patterns plus every
// pattern near an f16 or bf16 rounding tie, near representable values and near the thresholds.
std::vector<std::uint32_t> sweep_patterns() {
  std::vector<std::uint32_t> out;
  out.reserve(3'200'000);
  for (std::uint64_t x = 0; x <= 0xffffffffu; x += 2039) out.push_back(static_cast<std::uint32_t>(x));
  for (std::uint32_t sign : {0u, 0x80000000u}) {
    for (std::uint32_t h = 0; h < 0x7c00; ++h) {  // f16: each value and the midpoint to the next one up
      const double lo = ref_f16_value(static_cast<std::uint16_t>(h));
      const double hi = h + 1 == 0x7c00 ? 65536.0 : ref_f16_value(static_cast<std::uint16_t>(h + 1));
      const std::uint32_t v = bits_of(static_cast<float>(lo));
      const std::uint32_t mid = bits_of(static_cast<float>((lo + hi) / 2));  // exact: 12 significant bits
      for (std::uint32_t d = 0; d < 5; ++d) out.push_back(sign | (mid + d - 2));
      for (std::uint32_t d = 0; d < 3; ++d) out.push_back(sign | ((v + d - 1) & 0x7fffffffu));
    }
    for (std::uint32_t hi = 0; hi < 0x8000; ++hi) {  // bf16: midpoints have low half 0x8000
      for (std::uint32_t lo : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) {
        out.push_back(sign | (hi << 16) | lo);
      }
    }
    for (std::uint32_t edge : {0x477ff000u, 0x477fe000u, 0x38800000u, 0x33000000u, 0x33800000u, 0x7f7f8000u,
                               0x7f800000u, 0x00000800u, 0x00800000u, 0x7fc00000u}) {
      for (std::uint32_t d = 0; d < 4096; ++d) out.push_back(sign | ((edge + d - 2048) & 0x7fffffffu));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("dtype: sizes, names and kinds of all ten") {
  struct row {
    dtype t;
    std::size_t size;
    std::string_view name;
    bool floating;
  };
  const row rows[] = {{dtype::f32, 4, "f32", true},  {dtype::f64, 8, "f64", true},
                      {dtype::f16, 2, "f16", true},  {dtype::bf16, 2, "bf16", true},
                      {dtype::i8, 1, "i8", false},   {dtype::i16, 2, "i16", false},
                      {dtype::i32, 4, "i32", false}, {dtype::i64, 8, "i64", false},
                      {dtype::u8, 1, "u8", false},   {dtype::boolean, 1, "bool", false}};
  REQUIRE(std::size(rows) == redist::dtype_count);
  for (std::size_t i = 0; i < redist::dtype_count; ++i) {
    const row& r = rows[i];
    CAPTURE(r.name);
    CHECK(static_cast<std::size_t>(r.t) == i);
    CHECK(redist::size_of(r.t) == r.size);
    CHECK(redist::name(r.t) == r.name);
    CHECK(redist::is_floating(r.t) == r.floating);
    CHECK(redist::is_integral(r.t) == !r.floating);
    CHECK(redist::dtype_from_name(r.name) == r.t);
    CHECK(redist::dtype_from_name(redist::name(r.t)) == r.t);
  }
  static_assert(redist::dtype_from_name("bf16") == dtype::bf16);
}

TEST_CASE("dtype_from_name: unknown names throw redist::error listing the valid names") {
  for (std::string_view bad : {"float32", "F32", "boolean", "", "f32 "}) {
    std::string what;
    try {
      (void)redist::dtype_from_name(bad);
    } catch (const redist::error& e) {
      what = e.what();
    }
    CHECK(what == "redist::dtype_from_name: unknown dtype name '" + std::string(bad) +
                      "'; valid names are f32, f64, f16, bf16, i8, i16, i32, i64, u8, bool");
  }
}

TEST_CASE("dtype_of and the 16-bit storage types") {
  static_assert(redist::dtype_of<float> == dtype::f32);
  static_assert(redist::dtype_of<double> == dtype::f64);
  static_assert(redist::dtype_of<redist::f16> == dtype::f16);
  static_assert(redist::dtype_of<redist::bf16> == dtype::bf16);
  static_assert(redist::dtype_of<std::int8_t> == dtype::i8);
  static_assert(redist::dtype_of<std::int16_t> == dtype::i16);
  static_assert(redist::dtype_of<std::int32_t> == dtype::i32);
  static_assert(redist::dtype_of<std::int64_t> == dtype::i64);
  static_assert(redist::dtype_of<std::uint8_t> == dtype::u8);
  static_assert(redist::dtype_of<bool> == dtype::boolean);
  static_assert(redist::dtype_of<const volatile double> == dtype::f64);
  static_assert(sizeof(redist::f16) == 2 && std::is_trivially_copyable_v<redist::f16>);
  static_assert(sizeof(redist::bf16) == 2 && std::is_trivially_copyable_v<redist::bf16>);
  static_assert(sizeof(redist::f16) == redist::size_of(dtype::f16));
  CHECK(redist::f16{0x3c00} == redist::f16{0x3c00});
  CHECK(redist::f16{0x0000} != redist::f16{0x8000});
  CHECK(redist::bf16{0x7fc0} == redist::bf16{0x7fc0});
  CHECK(redist::bf16{0x3f80} != redist::bf16{0x3f81});
}

TEST_CASE("f16: known values, rounded by hand") {
  struct row {
    float in;
    std::uint16_t out;
  };
  const row rows[] = {
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {65504.0f, 0x7bff},                    // largest finite
      {65519.996f, 0x7bff},                  // just below the midpoint to 2^16
      {65520.0f, 0x7c00},                    // the midpoint: ties to even, the even neighbour is 2^16 = Inf
      {-65520.0f, 0xfc00},                   //
      {1e6f, 0x7c00},                        //
      {0x1p-14f, 0x0400},                    // smallest normal
      {0x1.ff8p-15f, 0x03ff},                // largest subnormal, 1023 * 2^-24
      {0x1.ffcp-15f, 0x0400},                // 1023.5 * 2^-24: tie, even is 1024 (smallest normal)
      {0x1.ffap-15f, 0x03ff},                // 1023.25 * 2^-24
      {0x1p-24f, 0x0001},                    // smallest subnormal
      {-0x1p-24f, 0x8001},                   //
      {0x1p-25f, 0x0000},                    // half the smallest subnormal: tie, to even 0
      {-0x1p-25f, 0x8000},                   //   keeps the sign
      {0x1.000002p-25f, 0x0001},             // just above the tie
      {0x1.8p-24f, 0x0002},                  // 1.5 * 2^-24: tie between 1 and 2, to even 2
      {0x1.4p-23f, 0x0002},                  // 2.5 * 2^-24: tie between 2 and 3, to even 2
      {1e-8f, 0x0000},                       // 0.168 * 2^-24
      {0x1p-149f, 0x0000},                   // f32 subnormal
      {1.0f + 0x1p-11f, 0x3c00},             // tie between 1 and 1+2^-10: to even 1
      {1.0f + 0x1p-10f, 0x3c01},             //
      {1.0f + 3 * 0x1p-11f, 0x3c02},         // tie between 1+2^-10 and 1+2^-9: to even 1+2^-9
      {1.0f + 0x1p-11f + 0x1p-23f, 0x3c01},  // just above a tie
      {0.1f, 0x2e66},                        // 0.0999755859375
      {std::numeric_limits<float>::infinity(), 0x7c00},
      {-std::numeric_limits<float>::infinity(), 0xfc00},
      {float_of(0x7fc00000u), 0x7e00},
      {float_of(0xffc00000u), 0xfe00},
  };
  for (const row& r : rows) {
    CAPTURE(hex(bits_of(r.in)));
    CHECK(redist::f32_to_f16(r.in).bits == r.out);
  }
  CHECK(redist::f16_to_f32(redist::f16{0x3555}) == 0x1.554p-2f);  // 0.333251953125
  CHECK(redist::f16_to_f32(redist::f16{0x0001}) == 0x1p-24f);
  CHECK(redist::f16_to_f32(redist::f16{0x83ff}) == -0x1.ff8p-15f);
  CHECK(redist::f16_to_f32(redist::f16{0x7bff}) == 65504.0f);
  CHECK(bits_of(redist::f16_to_f32(redist::f16{0x8000})) == 0x80000000u);
  // A signalling NaN whose payload is only in the low bits stays a NaN: quiet, signed, never Inf.
  CHECK(redist::f32_to_f16(float_of(0x7f800001u)).bits == 0x7e00);
  CHECK(redist::f32_to_f16(float_of(0xff800001u)).bits == 0xfe00);
  CHECK(bits_of(redist::f16_to_f32(redist::f16{0x7c01})) == 0x7fc02000u);
  static_assert(redist::f32_to_f16(1.0f).bits == 0x3c00);
  static_assert(redist::f16_to_f32(redist::f16{0xc000}) == -2.0f);
}

TEST_CASE("bf16: known values, rounded by hand") {
  struct row {
    float in;
    std::uint16_t out;
  };
  const row rows[] = {
      {1.0f, 0x3f80},
      {-2.0f, 0xc000},
      {-0.0f, 0x8000},
      {1.0f + 0x1p-8f, 0x3f80},                     // tie between 1 and 1+2^-7: to even 1
      {1.0f + 3 * 0x1p-8f, 0x3f82},                 // tie between 1+2^-7 and 1+2^-6: to even 1+2^-6
      {1.0f + 0x1p-8f + 0x1p-23f, 0x3f81},          // just above a tie
      {float_of(0x7f7f7fffu), 0x7f7f},              // just below the midpoint past the largest finite
      {float_of(0x7f7f8000u), 0x7f80},              // the midpoint: to even, which is Inf
      {std::numeric_limits<float>::max(), 0x7f80},  //
      {float_of(0x00000001u), 0x0000},              // f32 subnormals round on bf16's subnormal grid
      {float_of(0x00008000u), 0x0000},              // tie, to even 0
      {float_of(0x00018000u), 0x0002},              // tie between 1 and 2, to even 2
      {float_of(0x80008001u), 0x8001},              //
      {float_of(0x007fffffu), 0x0080},              // largest f32 subnormal rounds up to 2^-126
      {std::numeric_limits<float>::infinity(), 0x7f80},
      {float_of(0xff800000u), 0xff80},
      {float_of(0x7f800001u), 0x7fc0},  // signalling NaN, payload only in the low bits: NaN, never Inf
      {float_of(0xff800001u), 0xffc0},
      {float_of(0x7fc00000u), 0x7fc0},
  };
  for (const row& r : rows) {
    CAPTURE(hex(bits_of(r.in)));
    CHECK(redist::f32_to_bf16(r.in).bits == r.out);
  }
  CHECK(redist::bf16_to_f32(redist::bf16{0x4049}) == 3.140625f);
  CHECK(bits_of(redist::bf16_to_f32(redist::bf16{0x7f81})) == 0x7fc10000u);  // quietened, payload kept
  CHECK(bits_of(redist::bf16_to_f32(redist::bf16{0xff80})) == 0xff800000u);
  static_assert(redist::f32_to_bf16(1.0f).bits == 0x3f80);
  static_assert(redist::bf16_to_f32(redist::bf16{0x3f80}) == 1.0f);
}

TEST_CASE("f16 and bf16: all 65,536 patterns decode exactly and come back unchanged") {
  std::size_t bad_f16 = 0;
  std::size_t bad_bf16 = 0;
  for (std::uint32_t i = 0; i <= 0xffff; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    {
      const float f = redist::f16_to_f32(redist::f16{h});
      const double want = ref_f16_value(h);
      const std::uint16_t back = redist::f32_to_f16(f).bits;
      bool ok;
      if (std::isnan(want)) {  // quietened, sign and payload kept
        ok = f32_is_quiet_nan(f) && std::signbit(f) == std::signbit(want) && back == (h | 0x0200);
      } else {
        ok = bits_of(f) == bits_of(static_cast<float>(want)) && back == h;
      }
      if (!ok && bad_f16++ < 10) {
        MESSAGE("f16 ", hex(h), " -> f32 ", hex(bits_of(f)), " -> f16 ", hex(back));
      }
    }
    {
      const float f = redist::bf16_to_f32(redist::bf16{h});
      const double want = ref_bf16_value(h);
      const std::uint16_t back = redist::f32_to_bf16(f).bits;
      bool ok;
      if (std::isnan(want)) {
        ok = f32_is_quiet_nan(f) && std::signbit(f) == std::signbit(want) && back == (h | 0x0040);
      } else {
        ok = bits_of(f) == bits_of(static_cast<float>(want)) && back == h;
      }
      if (!ok && bad_bf16++ < 10) {
        MESSAGE("bf16 ", hex(h), " -> f32 ", hex(bits_of(f)), " -> bf16 ", hex(back));
      }
    }
  }
  CHECK(bad_f16 == 0);
  CHECK(bad_bf16 == 0);
}

TEST_CASE("f32_to_f16 and f32_to_bf16 match a double-arithmetic reference over ~3M f32 patterns") {
  REQUIRE(std::fegetround() == FE_TONEAREST);
  const std::vector<std::uint32_t> patterns = sweep_patterns();
  std::size_t bad_f16 = 0;
  std::size_t bad_bf16 = 0;
  for (const std::uint32_t x : patterns) {
    const float f = float_of(x);
    const std::uint16_t h = redist::f32_to_f16(f).bits;
    const std::uint16_t b = redist::f32_to_bf16(f).bits;
    bool ok_h;
    bool ok_b;
    std::uint16_t want_h = 0;
    std::uint16_t want_b = 0;
    if (std::isnan(f)) {
      const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
      ok_h = f16_is_quiet_nan(h) && (h & 0x8000) == sign;
      ok_b = bf16_is_quiet_nan(b) && (b & 0x8000) == sign;
    } else {
      want_h = ref_f32_to_f16(f);
      want_b = ref_f32_to_bf16(f);
      ok_h = h == want_h;
      ok_b = b == want_b;
    }
    if (!ok_h && bad_f16++ < 10) MESSAGE("f32 ", hex(x), " -> f16 ", hex(h), ", want ", hex(want_h));
    if (!ok_b && bad_bf16++ < 10) MESSAGE("f32 ", hex(x), " -> bf16 ", hex(b), ", want ", hex(want_b));
  }
  MESSAGE(patterns.size(), " f32 patterns checked");
  CHECK(patterns.size() > 3'000'000);
  CHECK(bad_f16 == 0);
  CHECK(bad_bf16 == 0);
}

TEST_CASE("survives_f32: edge cases") {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  constexpr double inf = std::numeric_limits<double>::infinity();
  constexpr std::int64_t i64_min = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t i64_max = std::numeric_limits<std::int64_t>::max();
  constexpr std::int32_t i32_min = std::numeric_limits<std::int32_t>::min();
  constexpr std::int32_t i32_max = std::numeric_limits<std::int32_t>::max();

  CHECK(survives(std::int32_t{0}));
  CHECK(survives(std::int32_t{-1}));
  CHECK(survives(std::int32_t{1 << 24}));
  CHECK_FALSE(survives(std::int32_t{(1 << 24) + 1}));
  CHECK(survives(std::int32_t{(1 << 24) + 2}));
  CHECK(survives(std::int32_t{-(1 << 24)}));
  CHECK_FALSE(survives(std::int32_t{-(1 << 24) - 1}));
  CHECK_FALSE(survives(i32_max));
  CHECK(survives(i32_min));
  CHECK(survives(std::int32_t{0x7fffff80}));  // (2^24 - 1) * 2^7, the largest float below 2^31
  CHECK_FALSE(survives(std::int32_t{0x7fffff81}));

  CHECK(survives(std::int64_t{0}));
  CHECK(survives(std::int64_t{1} << 24));
  CHECK_FALSE(survives((std::int64_t{1} << 24) + 1));
  CHECK_FALSE(survives(-(std::int64_t{1} << 24) - 1));
  CHECK(survives(std::int64_t{1} << 40));
  CHECK(survives(-(std::int64_t{1} << 40)));
  CHECK_FALSE(survives((std::int64_t{1} << 53) + 1));
  CHECK(survives(std::int64_t{0xffffff} << 39));  // the largest float below 2^63
  CHECK_FALSE(survives((std::int64_t{0xffffff} << 39) + 1));
  CHECK(survives(i64_min));
  CHECK_FALSE(survives(i64_min + 1));
  CHECK_FALSE(survives(i64_max));  // rounds to 2^63, which int64 cannot hold
  CHECK(survives(std::int64_t{i32_max} + 1));

  CHECK_FALSE(survives(0.1));
  CHECK(survives(0.5));
  CHECK(survives(-0.0));
  CHECK(survives(static_cast<double>(0.1f)));
  CHECK_FALSE(survives(1e300));
  CHECK_FALSE(survives(-1e300));
  CHECK_FALSE(survives(1e-300));
  CHECK_FALSE(survives(4.9e-324));  // a double subnormal: flushes to 0 as a float
  CHECK(survives(nan));
  CHECK(survives(-nan));
  CHECK(survives(inf));
  CHECK(survives(-inf));
  CHECK(survives(static_cast<double>(std::numeric_limits<float>::max())));
  CHECK_FALSE(survives(std::nextafter(static_cast<double>(std::numeric_limits<float>::max()), inf)));
  CHECK(survives(0x1p-149));        // the smallest float subnormal
  CHECK_FALSE(survives(0x1p-150));  // half of it
  CHECK_FALSE(survives(0x1.8p-149));

  // Always true, whatever the value.
  CHECK(survives(std::numeric_limits<float>::quiet_NaN()));
  CHECK(survives(float_of(0x7f800001u)));
  CHECK(survives(redist::f16{0x7c01}));
  CHECK(survives(redist::bf16{0xffff}));
  CHECK(survives(std::int8_t{-128}));
  CHECK(survives(std::int16_t{-32768}));
  CHECK(survives(std::uint8_t{255}));
  CHECK(survives(true));
}

TEST_CASE("survives_f32 agrees with a conversion-based reference on random values") {
  const std::uint64_t seed = std::random_device{}();
  MESSAGE("seed ", seed);
  std::mt19937_64 rng(seed);
  std::size_t bad = 0;
  for (int i = 0; i < 200'000; ++i) {
    // Significands of 20..28 bits at every shift, so that both sides of the 24-bit limit are common.
    const int width = 20 + static_cast<int>(rng() % 9);
    const std::uint64_t mant = (rng() >> (64 - width)) | (std::uint64_t{1} << (width - 1));
    const int shift = static_cast<int>(rng() % static_cast<std::uint64_t>(64 - width));
    std::uint64_t u = mant << shift;
    if (rng() % 2 != 0) u = 0 - u;
    const auto v64 = static_cast<std::int64_t>(u);
    if (survives(v64) != ref_int_survives(v64) && bad++ < 10) MESSAGE("i64 ", v64);
    const auto v32 = static_cast<std::int32_t>(static_cast<std::uint32_t>(u >> (rng() % 33)));
    if (survives(v32) != ref_int_survives(v32) && bad++ < 10) MESSAGE("i32 ", v32);
    // Doubles: random bit patterns, and floats nudged by a few double ulps.
    const double d = std::bit_cast<double>(rng());
    if (survives(d) != ref_f64_survives(d) && bad++ < 10)
      MESSAGE("f64 ", hex(std::bit_cast<std::uint64_t>(d)));
    const double near = std::bit_cast<double>(
        std::bit_cast<std::uint64_t>(static_cast<double>(float_of(static_cast<std::uint32_t>(rng())))) +
        (rng() % 5) - 2);
    if (survives(near) != ref_f64_survives(near) && bad++ < 10) {
      MESSAGE("f64 ", hex(std::bit_cast<std::uint64_t>(near)));
    }
  }
  CHECK(bad == 0);
}

namespace {

// Fills n elements that survive, puts a lossy one at each listed position and checks the scan finds the
// first.
template <class T>
void check_first_lossy(T good, T lossy) {
  REQUIRE(survives(good));
  REQUIRE_FALSE(survives(lossy));
  const dtype t = redist::dtype_of<T>;
  CAPTURE(redist::name(t));
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{256}, std::size_t{1000}}) {
    std::vector<T> v(n, good);
    CHECK(redist::first_lossy_f32(t, v.data(), n) == n);
    for (std::size_t at : {std::size_t{0}, std::size_t{1}, std::size_t{255}, std::size_t{256},
                           std::size_t{257}, std::size_t{511}, std::size_t{512}, n / 2, n - 1}) {
      if (at >= n) continue;
      CAPTURE(n);
      CAPTURE(at);
      v.assign(n, good);
      v[at] = lossy;
      CHECK(redist::first_lossy_f32(t, v.data(), n) == at);
      CHECK(redist::first_lossy_f32(t, v.data(), at) == at);  // a count that stops before it
      v[n - 1] = lossy;                                       // a later lossy one does not matter
      CHECK(redist::first_lossy_f32(t, v.data(), n) == at);
    }
  }
  CHECK(redist::first_lossy_f32(t, nullptr, 0) == 0);
}

}  // namespace

TEST_CASE("first_lossy_f32: the first lossy element at the start, middle and end, or none") {
  check_first_lossy<std::int32_t>(-(1 << 24), (1 << 24) + 1);
  check_first_lossy<std::int64_t>(std::int64_t{3} << 60, std::numeric_limits<std::int64_t>::max());
  check_first_lossy<double>(std::numeric_limits<double>::infinity(), 0.1);
  check_first_lossy<double>(std::numeric_limits<double>::quiet_NaN(), 1e300);

  const float floats[] = {0.1f, std::numeric_limits<float>::quiet_NaN(), 3e38f};
  CHECK(redist::first_lossy_f32(dtype::f32, floats, 3) == 3);
  const std::uint16_t halves[] = {0x7c01, 0xffff, 0x0001};
  CHECK(redist::first_lossy_f32(dtype::f16, halves, 3) == 3);
  CHECK(redist::first_lossy_f32(dtype::bf16, halves, 3) == 3);
  const std::uint8_t bytes[] = {0, 1, 255};
  CHECK(redist::first_lossy_f32(dtype::u8, bytes, 3) == 3);
  CHECK(redist::first_lossy_f32(dtype::i8, bytes, 3) == 3);
  CHECK(redist::first_lossy_f32(dtype::boolean, bytes, 2) == 2);
  const std::int16_t shorts[] = {-32768, 32767};
  CHECK(redist::first_lossy_f32(dtype::i16, shorts, 2) == 2);
}
