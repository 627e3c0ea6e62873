// The float32 casts of one element of each dtype, shared by the host memory space and the CUDA kernels, so
// that a device cast gives the host's bits: f16 and bf16 round to nearest even (dtype.hpp), integers
// saturate and a NaN becomes 0 on the way back, bool is nonzero.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "redist/core/dtype.hpp"
#include "redist/detail/host_device.hpp"

namespace redist::detail {

template <class T>
REDIST_HOST_DEVICE constexpr float cast_to_f32(T v) noexcept {
  if constexpr (std::is_same_v<T, f16>)
    return f16_to_f32(v);
  else if constexpr (std::is_same_v<T, bf16>)
    return bf16_to_f32(v);
  else
    return static_cast<float>(v);
}

// With allow_lossy a float may lie outside an integer type's range, or be NaN, where a plain cast would be
// undefined: integers saturate, NaN gives 0.
template <class T>
REDIST_HOST_DEVICE constexpr T cast_from_f32(float v) noexcept {
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

// Whether one element comes back from float32 with the same value (see redist::first_lossy_f32).
template <class T>
REDIST_HOST_DEVICE inline bool survives_f32_value(T v) noexcept {
  if constexpr (std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t>)
    return int_survives_f32(v);
  else if constexpr (std::is_same_v<T, double>)
    return f64_survives_f32(v);
  else
    return true;
}

// Calls f(T{}) with the element type of t. f is taken by value: reached through a reference, the references
// it captures might alias the bytes a loop in it writes, and GCC 12 then neither hoists nor vectorizes the
// loop (4x slower casts).
template <class F>
REDIST_HOST_DEVICE constexpr void visit_dtype(dtype t, F f) {
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

// A T read from, or written to, memory with no alignment promised (a staging block's offsets need not be
// aligned for T): byte by byte, which compilers fold into one access where they can; a kernel reads and
// writes aligned addresses directly.
template <class T>
REDIST_HOST_DEVICE constexpr T load_as(const std::byte* p) noexcept {
#if defined(__CUDA_ARCH__)
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) == 0) return *reinterpret_cast<const T*>(p);
#endif
  struct raw {
    std::byte b[sizeof(T)];
  } r{};
  for (std::size_t i = 0; i < sizeof(T); ++i) r.b[i] = p[i];
  return std::bit_cast<T>(r);
}

template <class T>
REDIST_HOST_DEVICE constexpr void store_as(std::byte* p, T v) noexcept {
#if defined(__CUDA_ARCH__)
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) == 0) {
    *reinterpret_cast<T*>(p) = v;
    return;
  }
#endif
  struct raw {
    std::byte b[sizeof(T)];
  };
  const raw r = std::bit_cast<raw>(v);
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = r.b[i];
}

}  // namespace redist::detail
