// Test helper: row-major index math (element counts, multi-index <-> flat index) for the element-by-element
// references of the seqpar tests, written plainly so that they do not share the library's own index code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace redist::test {

inline std::size_t numel(const std::vector<std::int64_t>& shape) {
  std::size_t n = 1;
  for (auto e : shape) n *= static_cast<std::size_t>(e);
  return n;
}

inline std::vector<std::int64_t> unflatten(std::size_t flat, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> idx(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    idx[d] = static_cast<std::int64_t>(flat % static_cast<std::size_t>(shape[d]));
    flat /= static_cast<std::size_t>(shape[d]);
  }
  return idx;
}

inline std::size_t flatten(const std::vector<std::int64_t>& idx, const std::vector<std::int64_t>& shape) {
  std::size_t flat = 0;
  for (std::size_t d = 0; d < shape.size(); ++d)
    flat = flat * static_cast<std::size_t>(shape[d]) + static_cast<std::size_t>(idx[d]);
  return flat;
}

}  // namespace redist::test
