// redist::float32_staging, the reference system's wire format: every element cast to float32, flattened, and
// padded with zeros to the longest participant so equal-count collectives can be used; cast back on receipt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "redist/core/dtype.hpp"

namespace redist {

struct float32_staging {
  static constexpr const char* label = "float32_staging";
  // Integers beyond +-2^24 and doubles lose precision on the way: callers refuse them unless they allow loss.
  static constexpr bool lossless = false;
  static std::size_t first_lossy(dtype t, const std::byte* data, std::size_t count) noexcept {
    return first_lossy_f32(t, data, count);
  }
  static constexpr bool in_place = false;
  static constexpr bool padded = true;
  static constexpr std::size_t wire_unit = sizeof(float);  // a window never splits an element

  static constexpr std::size_t wire_bytes(dtype, std::size_t elements) noexcept {
    return elements * sizeof(float);
  }

  // Casts the elements behind wire bytes [from, from + n) of an item whose memory is `src` to float32 at
  // `dst`.
  static void pack(dtype t, const std::byte* src, std::size_t from, std::size_t n, std::byte* dst) noexcept {
    visit(t, [&]<class T>(T) {
      for (std::size_t i = 0; i < n / sizeof(float); ++i) {
        T v;
        std::memcpy(&v, src + (from / sizeof(float) + i) * sizeof(T), sizeof(T));
        const float f = to_f32(v);
        std::memcpy(dst + i * sizeof(float), &f, sizeof(float));
      }
    });
  }

  // Casts the float32 elements at `src` back to dtype t, into wire bytes [from, from + n) of the item at
  // `dst`.
  static void unpack(dtype t, const std::byte* src, std::size_t from, std::size_t n,
                     std::byte* dst) noexcept {
    visit(t, [&]<class T>(T) {
      for (std::size_t i = 0; i < n / sizeof(float); ++i) {
        float f;
        std::memcpy(&f, src + i * sizeof(float), sizeof(float));
        const T v = from_f32<T>(f);
        std::memcpy(dst + (from / sizeof(float) + i) * sizeof(T), &v, sizeof(T));
      }
    });
  }

 private:
  template <class F>
  static void visit(dtype t, F f) noexcept {
    switch (t) {
      case dtype::f32:
        return f(float{});
      case dtype::f64:
        return f(double{});
      case dtype::f16:
        return f(f16{});
      case dtype::bf16:
        return f(bf16{});
      case dtype::i8:
        return f(std::int8_t{});
      case dtype::i16:
        return f(std::int16_t{});
      case dtype::i32:
        return f(std::int32_t{});
      case dtype::i64:
        return f(std::int64_t{});
      case dtype::u8:
        return f(std::uint8_t{});
      case dtype::boolean:
        return f(bool{});
    }
  }

  template <class T>
  static float to_f32(T v) noexcept {
    if constexpr (std::is_same_v<T, f16>)
      return f16_to_f32(v);
    else if constexpr (std::is_same_v<T, bf16>)
      return bf16_to_f32(v);
    else
      return static_cast<float>(v);
  }

  // Integers saturate: with allow_lossy a float may lie outside the type's range, or be NaN, where a plain
  // cast would be undefined.
  template <class T>
  static T from_f32(float v) noexcept {
    if constexpr (std::is_same_v<T, f16>)
      return f32_to_f16(v);
    else if constexpr (std::is_same_v<T, bf16>)
      return f32_to_bf16(v);
    else if constexpr (std::is_same_v<T, bool>)
      return v != 0.0f;
    else if constexpr (std::is_floating_point_v<T>)
      return static_cast<T>(v);
    else {
      if (v != v) return T{0};
      if (v <= static_cast<float>(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
      if (v >= static_cast<float>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
      return static_cast<T>(v);
    }
  }
};

}  // namespace redist
