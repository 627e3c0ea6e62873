// dispatch's messages, made on the root alone before any byte moves: every item checked (contiguity, sizes,
// depth) and encoded as a first message of fixed size (header, schema, small tensors) and the rest of its
// stream, its large tensors listed to be sent from the item's own memory; device items' small tensors
// packed by one table in their memory space.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/byte_codec.hpp"
#include "redist/detail/checked.hpp"
#include "redist/staging/buffer.hpp"

namespace redist {

struct dispatch_options {
  // Read on the root only (receivers learn it from the root's first message), so ranks need not agree on it.
  // A tensor of fewer bytes travels packed with the schema (one copy on each side); a larger one is sent from
  // the item's memory and received into the result's tensor, with no copy. 0: every tensor on its own.
  // Measured with Open MPI on shared memory (bench_dispatch): packing wins up to 8-16 KiB, since a message
  // costs more than copying that much (above the 4 KiB eager limit each one also needs a rendezvous), and
  // loses from 32 KiB on.
  std::size_t pack_below = std::size_t{16} << 10;
};

namespace detail {

// Messages of dispatch() share one tag: between a root and a receiver they are matched in the order they were
// sent, which both sides derive from the schema.
inline constexpr int dispatch_tag = 0x4453;

// The first message to every receiver has this fixed size, so that it can be received without knowing more:
// a header, then the start of its stream (schema, then packed tensors). Small
// enough to stay within Open MPI's shared-memory eager limit (4 KiB); the rest of a longer stream follows in
// a second message.
inline constexpr std::size_t dispatch_head_bytes = 1024;

enum class dispatch_status : std::uint64_t { item = 1, nothing = 2 };

// tensor_bytes: what the item's tensors take in all, which bounds what a receiver allocates for its schema.
struct dispatch_header {
  dispatch_status status;
  std::uint64_t schema_bytes;
  std::uint64_t packed_bytes;
  std::uint64_t pack_below;
  std::uint64_t tensor_bytes;
};
static_assert(sizeof(dispatch_header) == 40);

inline constexpr std::size_t dispatch_inline_bytes = dispatch_head_bytes - sizeof(dispatch_header);

// Where a tensor sits in its item, for error messages: field names and list indices from the top.
struct path_step {
  const std::string* name;  // null: a list index
  std::size_t index;
};

inline std::string path_string(const std::vector<path_step>& path) {
  if (path.empty()) return "(the item itself)";
  std::string s;
  for (const auto& p : path) {
    if (p.name != nullptr) {
      if (!s.empty()) s += '.';
      s += *p.name;
    } else {
      s += '[' + std::to_string(p.index) + ']';
    }
  }
  return s;
}

// Bytes of a dense tensor; false when an extent is negative or the product overflows on the way, as
// host_tensor refuses it (so no receiver fails to allocate what the root accepted).
template <class Tensor>
bool tensor_bytes(const Tensor& t, std::size_t& bytes) {
  using traits = tensor_traits<Tensor>;
  bytes = size_of(traits::dtype(t));
  for (std::size_t d = 0, rank = traits::rank(t); d < rank; ++d) {
    const auto e = static_cast<std::int64_t>(traits::extent(t, d));
    if (e < 0 || !checked_mul(bytes, static_cast<std::size_t>(e), bytes)) return false;
  }
  return true;
}

// Checks one item on the root and lists its tensors' bytes depth first; throws naming the tensor.
template <class Tensor>
void collect_tensors(const nested<Tensor>& node, std::size_t item, std::vector<path_step>& path,
                     std::vector<const_segment>& out) {
  auto problem = [&](auto&&... what) {
    fail("redist::dispatch: item ", item, ", tensor '", path_string(path), "' ", what...);
  };
  if (path.size() > static_cast<std::size_t>(max_nested_depth))
    fail("redist::dispatch: item ", item, " nests deeper than ", max_nested_depth, " levels at '",
         path_string(path), "'");
  if (node.is_tensor()) {
    const Tensor& t = node.tensor();
    if constexpr (traits_have_contiguity<Tensor>) {
      if (!tensor_traits<Tensor>::is_contiguous(t)) problem("is not contiguous");
    }
    std::size_t bytes = 0;
    if (!tensor_bytes(t, bytes)) problem("has a negative extent or a size that overflows std::size_t");
    const auto* data = static_cast<const std::byte*>(tensor_traits<Tensor>::data(t));
    if (data == nullptr && bytes != 0) problem("has ", bytes, " bytes but no data");
    out.push_back({data, bytes});
  } else if (node.is_list()) {
    const auto& items = node.items();
    for (std::size_t i = 0; i < items.size(); ++i) {
      path.push_back({nullptr, i});
      collect_tensors(items[i], item, path, out);
      path.pop_back();
    }
  } else {
    for (const auto& f : node.named()) {
      path.push_back({&f.name, 0});
      collect_tensors(f.value, item, path, out);
      path.pop_back();
    }
  }
}

// The part of a receiver's stream beyond its first message, and the tensors sent on their own.
struct dispatch_outgoing {
  std::unique_ptr<std::byte[]> rest;  // not zeroed: every byte is written before it is sent
  std::size_t rest_bytes = 0;
  std::vector<const_segment> direct;
};

// Writes a stream into the inline part of a first message, then into `out.rest`: packing costs one copy.
class dispatch_stream_writer {
 public:
  dispatch_stream_writer(std::byte* head, dispatch_outgoing& out, const dispatch_header& h, std::size_t total)
      : head_(head + sizeof h), out_(out) {
    store_bytes(head, h);
    if (total > dispatch_inline_bytes) {
      out.rest_bytes = total - dispatch_inline_bytes;
      out.rest = std::make_unique_for_overwrite<std::byte[]>(out.rest_bytes);
    }
  }
  void put(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const std::byte*>(data);
    place(bytes, [p](std::byte* to, std::size_t at, std::size_t n) { host_space::copy(to, p + at, n); });
  }
  // Claims the stream's next `bytes` bytes, calling f(to, at, n) for each part of them in host memory (one,
  // or two where they straddle the head and `rest`): bytes [at, at + n) of the claim go to `to`.
  template <class F>
  void place(std::size_t bytes, F f) {
    const std::size_t first = at_ < dispatch_inline_bytes ? std::min(bytes, dispatch_inline_bytes - at_) : 0;
    if (first != 0) f(head_ + at_, 0, first);
    if (bytes != first) f(out_.rest.get() + (at_ + first - dispatch_inline_bytes), first, bytes - first);
    at_ += bytes;
  }

 private:
  std::byte* head_;
  dispatch_outgoing& out_;
  std::size_t at_ = 0;
};

// How the small tensors of host items reach the streams: copied straight in as they are listed.
struct host_packing {
  static void pack(dispatch_stream_writer& w, const_segment t) { w.put(t.data, t.bytes); }
  static void finish() noexcept {}
};

// The same for device items, whose bytes the host must not read: every receiver's small tensors are gathered
// by one table into one block of device staging, in order, which comes to the host in one read (one wait for
// the stream, however many receivers) and is copied from there into the streams (a stream's packed bytes are
// contiguous, but may straddle its head and `rest`).
template <class Space>
class device_packing {
 public:
  explicit device_packing(const Space& space) : space_(space) {}
  void pack(dispatch_stream_writer& w, const_segment t) {
    append_piece(sources_, t);
    w.place(t.bytes, [&](std::byte* to, std::size_t at, std::size_t n) {
      places_.push_back({to, bytes_ + at, n});
    });
    bytes_ += t.bytes;
  }
  // Complete on return: the streams may be sent.
  void finish() {
    if (bytes_ == 0) return;
    space_buffer<Space> staging(space_);
    std::byte* block = staging.resize(bytes_).data();
    space_.gather(sources_, block);
    std::vector<std::byte> packed(bytes_);
    space_.to_host(packed.data(), block, bytes_);
    for (const auto& p : places_) host_space::copy(p.to, packed.data() + p.from, p.bytes);
  }

 private:
  struct place {
    std::byte* to;     // host memory of a stream
    std::size_t from;  // offset in the block
    std::size_t bytes;
  };
  Space space_;
  std::vector<const_segment> sources_;
  std::vector<place> places_;
  std::size_t bytes_ = 0;
};

// Checks rank r's item and, unless it is the root's own (which is not sent), writes its first message into
// `head` and returns the rest; throws redist::error on bad input.
template <class Tensor, class Packing>
dispatch_outgoing prepare_item(const nested<Tensor>& item, std::size_t r, std::size_t pack_below, bool sent,
                               std::byte* head, Packing& packing) {
  dispatch_outgoing out;
  std::vector<path_step> path;
  std::vector<const_segment> tensors;
  collect_tensors(item, r, path, tensors);
  if (!sent) return out;
  const std::vector<std::byte> schema = encode_schema(item);
  std::size_t packed = 0, all = 0;
  for (const auto& t : tensors) {
    if (!checked_add(all, t.bytes, all))
      fail("redist::dispatch: item ", r, "'s tensors overflow std::size_t");
    if (t.bytes != 0 && t.bytes < pack_below) packed += t.bytes;
  }
  dispatch_stream_writer w(head, out, {dispatch_status::item, schema.size(), packed, pack_below, all},
                           schema.size() + packed);
  w.put(schema.data(), schema.size());
  for (const auto& t : tensors) {
    if (t.bytes == 0) continue;
    if (t.bytes < pack_below) {
      packing.pack(w, t);
    } else {
      out.direct.push_back(t);
    }
  }
  return out;
}

// A deep copy whose tensors the root owns like the receivers own theirs (the span overload's own item); the
// bytes are copied by `copies` (phase_copies of the item's space: on a device, one table when it runs).
template <class Tensor, class Copies>
nested<Tensor> clone_item(const nested<Tensor>& node, Copies& copies) {
  if (node.is_tensor()) {
    const Tensor& t = node.tensor();
    using traits = tensor_traits<Tensor>;
    std::vector<std::int64_t> shape(traits::rank(t));
    for (std::size_t d = 0; d < shape.size(); ++d) shape[d] = static_cast<std::int64_t>(traits::extent(t, d));
    Tensor copy = traits::allocate(traits::dtype(t), shape);
    std::size_t bytes = 0;
    if (tensor_bytes(t, bytes))
      copies.copy(static_cast<std::byte*>(traits::data(copy)), static_cast<const std::byte*>(traits::data(t)),
                  bytes);
    return nested<Tensor>(std::move(copy));  // moved explicitly: nvcc copies into the converting constructor
  }
  if (node.is_list()) {
    typename nested<Tensor>::list items;
    items.reserve(node.items().size());
    for (const auto& child : node.items()) items.push_back(clone_item(child, copies));
    return nested<Tensor>(std::move(items));
  }
  typename nested<Tensor>::fields named;
  named.reserve(node.named().size());
  for (const auto& f : node.named()) named.push_back({f.name, clone_item(f.value, copies)});
  return nested<Tensor>(std::move(named));
}

// The root's messages for every receiver, prepared before the agreement: each item checked and encoded.
struct dispatch_outbox {
  std::vector<dispatch_outgoing> out;
  std::vector<std::byte> heads;  // every receiver's first message, dispatch_head_bytes each
  std::byte* head(std::size_t r) { return heads.data() + r * dispatch_head_bytes; }
};

// Checks and encodes every item on the root, its small tensors packed in `space`; throws redist::error on bad
// input.
template <class Tensor, class Space>
void prepare_items(std::span<const nested<Tensor>> items, std::size_t size, std::size_t root,
                   std::size_t pack_below, dispatch_outbox& box, const Space& space) {
  box.out.resize(size);
  box.heads.resize(size * dispatch_head_bytes);
  if (items.size() > size)
    fail("redist::dispatch: ", items.size(), " items for a communicator of ", size,
         " ranks; at most one item per rank");
  auto packing = [&] {
    if constexpr (Space::space == memory_space::host)
      return host_packing{};
    else
      return device_packing<Space>(space);
  }();
  for (std::size_t r = 0; r < items.size(); ++r)
    box.out[r] = prepare_item(items[r], r, pack_below, r != root, box.head(r), packing);
  packing.finish();
  for (std::size_t r = items.size(); r < size; ++r) {
    const dispatch_header nothing{dispatch_status::nothing, 0, 0, pack_below, 0};
    store_bytes(box.head(r), nothing);
  }
}

}  // namespace detail
}  // namespace redist
