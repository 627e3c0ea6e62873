// Test helper: a tree of tensors (redist::nested) as text (kinds, names, dtypes, shapes) and its bytes,
// tensor by tensor, so that two trees compare by both; for any tensor type whose memory the host can read.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/tensor_traits.hpp"

namespace redist::test {

template <class Tensor>
void describe(const redist::nested<Tensor>& n, std::string& out, std::vector<std::byte>& bytes) {
  using traits = redist::tensor_traits<Tensor>;
  if (n.is_tensor()) {
    const Tensor& t = n.tensor();
    out += std::string(redist::name(traits::dtype(t))) + "[";
    std::size_t size = redist::size_of(traits::dtype(t));
    for (std::size_t d = 0; d < traits::rank(t); ++d) {
      out += (d ? "," : "") + std::to_string(traits::extent(t, d));
      size *= static_cast<std::size_t>(traits::extent(t, d));
    }
    out += "]";
    const auto* p = static_cast<const std::byte*>(traits::data(t));
    if (size != 0) bytes.insert(bytes.end(), p, p + size);
  } else if (n.is_list()) {
    out += "(";
    for (const auto& c : n.items()) {
      describe(c, out, bytes);
      out += ";";
    }
    out += ")";
  } else {
    out += "{";
    for (const auto& f : n.named()) {
      out += f.name + "=";
      describe(f.value, out, bytes);
      out += ";";
    }
    out += "}";
  }
}

}  // namespace redist::test
