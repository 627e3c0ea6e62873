// redist::staging_policy: what a staging (byte_staging, float32_staging, or a user's) must say and do: how
// its wire format sizes, packs and unpacks a stream's bytes, whether it works in place or pads, and its loss
// rule.
#pragma once

#include <concepts>
#include <cstddef>

#include "redist/core/dtype.hpp"
#include "redist/staging/copy_list.hpp"

namespace redist {

template <class S>
concept staging_policy = requires(dtype t, const std::byte* src, std::byte* dst, std::size_t n,
                                  detail::copy_list& list) {
  { S::label } -> std::convertible_to<const char*>;
  { S::lossless } -> std::convertible_to<bool>;  // every value arrives as sent; else first_lossy finds those
  { S::in_place } -> std::convertible_to<bool>;  // the wire format is the memory format: nothing is staged
  { S::padded } -> std::convertible_to<bool>;    // every block of a collective padded to the longest
  { S::wire_unit } -> std::convertible_to<std::size_t>;  // windows of a stream split it on multiples of this
  { S::wire_bytes(t, n) } -> std::convertible_to<std::size_t>;
  { S::first_lossy(t, src, n) } -> std::convertible_to<std::size_t>;
  S::pack(t, src, n, n, dst, list);  // lists its copies or casts, which the memory space makes
  S::unpack(t, src, n, n, dst, list);
};

}  // namespace redist
