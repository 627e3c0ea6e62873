// redist::nested<Tensor>: a tree of tensors (a tensor, a list, or named fields in order), the items that
// dispatch and the rotating broadcast move; its schema (structure, names, dtypes, shapes) as compact bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/byte_codec.hpp"
#include "redist/detail/text.hpp"

namespace redist {

template <tensor_like Tensor = host_tensor>
class nested {
 public:
  struct field;
  using list = std::vector<nested>;
  using fields = std::vector<field>;  // in order; names need not be unique, like any ordered record

  // An empty list.
  nested() = default;
  nested(Tensor t) : node_(std::move(t)) {}          // NOLINT(google-explicit-constructor): a leaf is a tree
  nested(list items) : node_(std::move(items)) {}    // NOLINT(google-explicit-constructor)
  nested(fields named) : node_(std::move(named)) {}  // NOLINT(google-explicit-constructor)

  bool is_tensor() const noexcept { return std::holds_alternative<Tensor>(node_); }
  bool is_list() const noexcept { return std::holds_alternative<list>(node_); }
  bool is_fields() const noexcept { return std::holds_alternative<fields>(node_); }

  Tensor& tensor() { return get<Tensor>("a tensor"); }
  const Tensor& tensor() const { return get<Tensor>("a tensor"); }
  list& items() { return get<list>("a list"); }
  const list& items() const { return get<list>("a list"); }
  fields& named() { return get<fields>("named fields"); }
  const fields& named() const { return get<fields>("named fields"); }

  // The tensors, depth first in order: the order in which schemas list them and their bytes travel.
  template <class Fn>
  void for_each_tensor(Fn&& fn) {
    visit_leaves(*this, fn);
  }
  template <class Fn>
  void for_each_tensor(Fn&& fn) const {
    visit_leaves(*this, fn);
  }

 private:
  template <class T>
  T& get(const char* what) {
    if (auto* p = std::get_if<T>(&node_)) return *p;
    detail::fail("redist::nested: this node is not ", what);
  }
  template <class T>
  const T& get(const char* what) const {
    if (const auto* p = std::get_if<T>(&node_)) return *p;
    detail::fail("redist::nested: this node is not ", what);
  }
  template <class Self, class Fn>
  static void visit_leaves(Self& self, Fn& fn) {
    if (auto* t = std::get_if<Tensor>(&self.node_)) {
      fn(*t);
    } else if (auto* l = std::get_if<list>(&self.node_)) {
      for (auto& child : *l) visit_leaves(child, fn);
    } else {
      for (auto& f : std::get<fields>(self.node_)) visit_leaves(f.value, fn);
    }
  }

  std::variant<list, Tensor, fields> node_;
};

template <tensor_like Tensor>
struct nested<Tensor>::field {
  std::string name;
  nested value;
};

// Format (detail/byte_codec.hpp's varints), depth first:
//   u8 kind: 0 list, 1 fields, 2 tensor
//   list: count, then each child; fields: count, then per field its name (length, bytes) and child;
//   tensor: u8 dtype code, rank, each extent
// Tensor bytes are not part of the schema.
namespace detail {

enum class nested_kind : std::uint8_t { list = 0, fields = 1, tensor = 2 };

// Depth beyond which a schema is refused, so a corrupt one cannot exhaust the stack. The root is at depth 0.
// The encoder refuses what the decoder would, so every schema it writes can be read back.
inline constexpr int max_nested_depth = 256;

template <class Tensor>
void encode_node(const nested<Tensor>& node, metadata_writer& w, int depth) {
  if (depth > max_nested_depth)
    fail("redist::encode_schema: nesting deeper than ", max_nested_depth, " levels");
  if (node.is_tensor()) {
    const Tensor& t = node.tensor();
    w.u8(static_cast<std::uint8_t>(nested_kind::tensor));
    w.u8(static_cast<std::uint8_t>(tensor_traits<Tensor>::dtype(t)));
    const std::size_t rank = tensor_traits<Tensor>::rank(t);
    w.varint(rank);
    for (std::size_t d = 0; d < rank; ++d) {
      const auto e = static_cast<std::int64_t>(tensor_traits<Tensor>::extent(t, d));
      // A negative extent would be written as a huge varint that no decoder accepts.
      if (e < 0) fail("redist::encode_schema: extent ", e, " of dim ", d, " is negative");
      w.varint(static_cast<std::uint64_t>(e));
    }
  } else if (node.is_list()) {
    w.u8(static_cast<std::uint8_t>(nested_kind::list));
    w.varint(node.items().size());
    for (const auto& child : node.items()) encode_node(child, w, depth + 1);
  } else {
    w.u8(static_cast<std::uint8_t>(nested_kind::fields));
    w.varint(node.named().size());
    for (const auto& f : node.named()) {
      w.string(f.name);
      encode_node(f.value, w, depth + 1);
    }
  }
}

// What the tensors a schema declares may still take: a decoder allocates no more than it was allowed.
struct schema_budget {
  std::size_t bytes;
};

template <class Tensor>
Tensor decode_tensor(metadata_reader& r, schema_budget& budget) {
  const std::size_t at = r.position();
  const std::uint8_t code = r.u8("dtype");
  if (code >= dtype_count)
    fail("redist::decode_schema: dtype code ", static_cast<int>(code), " is not a redist::dtype");
  const auto type = static_cast<dtype>(code);
  std::vector<std::int64_t> shape(r.count("tensor rank", 1));
  for (auto& e : shape) e = r.length("extent");
  // The byte size must be computable, the product taken dim by dim as every reader of a shape takes it: a
  // corrupt extent must reach neither the allocator nor a receive as a wrapped size.
  std::size_t bytes = 0;
  if (!shape_bytes(type, shape, bytes))
    fail("redist::decode_schema: the ", name(type), " tensor ", shape_text(shape), " at byte ", at,
         " has more bytes than a std::size_t holds");
  if (bytes > budget.bytes)
    fail("redist::decode_schema: the ", name(type), " tensor ", shape_text(shape), " at byte ", at, " takes ",
         bytes, " bytes, more than the ", budget.bytes, " bytes the schema may still declare");
  budget.bytes -= bytes;
  try {
    return tensor_traits<Tensor>::allocate(type, shape);
  } catch (const error&) {
    throw;
  } catch (const std::exception& e) {
    fail("redist::decode_schema: could not allocate the ", name(type), " tensor ", shape_text(shape),
         " at byte ", at, " (", bytes, " bytes): ", e.what());
  }
}

template <class Tensor>
nested<Tensor> decode_node(metadata_reader& r, int depth, schema_budget& budget) {
  if (depth > max_nested_depth)
    fail("redist::decode_schema: nesting deeper than ", max_nested_depth, " levels");
  const std::uint8_t kind = r.u8("node kind");
  switch (static_cast<nested_kind>(kind)) {
    case nested_kind::list: {
      typename nested<Tensor>::list items(r.count("list length", 1));
      for (auto& child : items) child = decode_node<Tensor>(r, depth + 1, budget);
      return nested<Tensor>(std::move(items));  // moved explicitly: nvcc does not move into a by-value ctor
    }
    case nested_kind::fields: {
      typename nested<Tensor>::fields named(r.count("field count", 2));
      for (auto& f : named) {
        f.name = r.string("field name");
        f.value = decode_node<Tensor>(r, depth + 1, budget);
      }
      return nested<Tensor>(std::move(named));
    }
    case nested_kind::tensor:
      return nested<Tensor>(decode_tensor<Tensor>(r, budget));
  }
  fail("redist::decode_schema: node kind ", static_cast<int>(kind), " is not a list, fields or tensor");
}

}  // namespace detail

// The schema of `tree`: its structure, field names, and each tensor's dtype and shape, not its bytes.
// Throws redist::error "redist::encode_schema: ..." for a tree nested deeper than max_nested_depth or a
// negative extent, which decode_schema would refuse.
template <class Tensor>
std::vector<std::byte> encode_schema(const nested<Tensor>& tree) {
  std::vector<std::byte> out;
  detail::metadata_writer w(out);
  detail::encode_node(tree, w, 0);
  return out;
}

// A tree with the schema's structure whose tensors are allocated with its dtypes and shapes (contents
// indeterminate, to be received into). Throws redist::error "redist::decode_schema: ..." on malformed input,
// on tensors that together take more than max_tensor_bytes (checked before each is allocated, so no more is
// ever allocated) and when a tensor cannot be allocated.
template <allocatable_tensor Tensor>
nested<Tensor> decode_schema(std::span<const std::byte> bytes,
                             std::size_t max_tensor_bytes = std::numeric_limits<std::size_t>::max()) {
  detail::metadata_reader r(bytes, "redist::decode_schema");
  detail::schema_budget budget{max_tensor_bytes};
  nested<Tensor> tree = detail::decode_node<Tensor>(r, 0, budget);
  if (r.remaining() != 0)
    detail::fail("redist::decode_schema: ", r.remaining(), " bytes left over after the schema");
  return tree;
}

}  // namespace redist
