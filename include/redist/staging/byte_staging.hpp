// redist::byte_staging, the default staging: samples cross the wire as their exact bytes in their own dtype,
// with variable counts, no cast and no padding, so MPI can read and write the tensors in place.
#pragma once

#include <cstddef>

#include "redist/core/dtype.hpp"
#include "redist/staging/copy_list.hpp"

namespace redist {

struct byte_staging {
  static constexpr const char* label = "byte_staging";
  // Every value arrives as it was sent.
  static constexpr bool lossless = true;
  static constexpr std::size_t first_lossy(dtype, const std::byte*, std::size_t count) noexcept {
    return count;
  }
  // The wire format is the memory format: no staging buffer is needed, sources and sinks are used directly.
  static constexpr bool in_place = true;
  // Variable counts: a collective moves each participant's own size.
  static constexpr bool padded = false;
  static constexpr std::size_t wire_unit = 1;  // windows of a stream may split it at any byte

  static constexpr std::size_t wire_bytes(dtype t, std::size_t elements) noexcept {
    return elements * size_of(t);
  }

  // Lists the copy of wire bytes [from, from + n) of an item whose memory is `src` to `dst`, and back.
  static void pack(dtype, const std::byte* src, std::size_t from, std::size_t n, std::byte* dst,
                   detail::copy_list& list) {
    list.copy(dst, src + from, n);
  }
  static void unpack(dtype, const std::byte* src, std::size_t from, std::size_t n, std::byte* dst,
                     detail::copy_list& list) {
    list.copy(dst + from, src, n);
  }
};

}  // namespace redist
