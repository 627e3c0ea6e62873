// redist::float32_staging, the reference system's wire format: every element cast to float32, flattened, and
// padded with zeros to the longest participant so equal-count collectives can be used; cast back on receipt.
#pragma once

#include <cstddef>
#include <cstdint>

#include "redist/core/dtype.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/staging/copy_list.hpp"

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

  // Lists the cast of the elements behind wire bytes [from, from + n) of an item whose memory is `src` to
  // float32 at `dst`, and back into the item's memory at `dst`.
  static void pack(dtype t, const std::byte* src, std::size_t from, std::size_t n, std::byte* dst,
                   detail::copy_list& list) {
    list.to_f32(t, src, from / sizeof(float), n / sizeof(float), dst);
  }
  static void unpack(dtype t, const std::byte* src, std::size_t from, std::size_t n, std::byte* dst,
                     detail::copy_list& list) {
    list.from_f32(t, src, from / sizeof(float), n / sizeof(float), dst);
  }
};

}  // namespace redist
