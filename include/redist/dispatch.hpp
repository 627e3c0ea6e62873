// redist::dispatch: a data loader's scatter of one nested item (named tensors and lists) per rank from a
// root: each item's schema and small tensors in one message, its large tensors sent from the item's own
// memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/comm/communicator.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/byte_codec.hpp"
#include "redist/detail/checked.hpp"
#include "redist/detail/text.hpp"

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

struct dispatch_header {
  dispatch_status status;
  std::uint64_t schema_bytes;
  std::uint64_t packed_bytes;
  std::uint64_t pack_below;
};
static_assert(sizeof(dispatch_header) == 32);

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
    const std::size_t first = at_ < dispatch_inline_bytes ? std::min(bytes, dispatch_inline_bytes - at_) : 0;
    host_space::copy(head_ + at_, p, first);
    if (bytes != first)
      host_space::copy(out_.rest.get() + (at_ + first - dispatch_inline_bytes), p + first, bytes - first);
    at_ += bytes;
  }

 private:
  std::byte* head_;
  dispatch_outgoing& out_;
  std::size_t at_ = 0;
};

// Checks rank r's item and, unless it is the root's own (which is not sent), writes its first message into
// `head` and returns the rest; throws redist::error on bad input.
template <class Tensor>
dispatch_outgoing prepare_item(const nested<Tensor>& item, std::size_t r, std::size_t pack_below, bool sent,
                               std::byte* head) {
  dispatch_outgoing out;
  std::vector<path_step> path;
  std::vector<const_segment> tensors;
  collect_tensors(item, r, path, tensors);
  if (!sent) return out;
  const std::vector<std::byte> schema = encode_schema(item);
  std::size_t packed = 0;
  for (const auto& t : tensors) {
    if (t.bytes != 0 && t.bytes < pack_below) packed += t.bytes;
  }
  dispatch_stream_writer w(head, out, {dispatch_status::item, schema.size(), packed, pack_below},
                           schema.size() + packed);
  w.put(schema.data(), schema.size());
  for (const auto& t : tensors) {
    if (t.bytes == 0) continue;
    if (t.bytes < pack_below) {
      w.put(t.data, t.bytes);
    } else {
      out.direct.push_back(t);
    }
  }
  return out;
}

// A deep copy whose tensors the root owns like the receivers own theirs (the span overload's own item).
template <class Tensor>
nested<Tensor> clone_item(const nested<Tensor>& node) {
  if (node.is_tensor()) {
    const Tensor& t = node.tensor();
    using traits = tensor_traits<Tensor>;
    std::vector<std::int64_t> shape(traits::rank(t));
    for (std::size_t d = 0; d < shape.size(); ++d) shape[d] = static_cast<std::int64_t>(traits::extent(t, d));
    Tensor copy = traits::allocate(traits::dtype(t), shape);
    std::size_t bytes = 0;
    if (tensor_bytes(t, bytes))
      host_space::copy(static_cast<std::byte*>(traits::data(copy)),
                       static_cast<const std::byte*>(traits::data(t)), bytes);
    return copy;
  }
  if (node.is_list()) {
    typename nested<Tensor>::list items;
    items.reserve(node.items().size());
    for (const auto& child : node.items()) items.push_back(clone_item(child));
    return items;
  }
  typename nested<Tensor>::fields named;
  named.reserve(node.named().size());
  for (const auto& f : node.named()) named.push_back({f.name, clone_item(f.value)});
  return named;
}

// Completes every request and forgets them, then rethrows the first failure.
template <class Request>
void wait_every(std::vector<Request>& requests) {
  wait_all(requests);
  requests.clear();
}

// The root's messages for every receiver, prepared before the agreement: each item checked and encoded.
struct dispatch_outbox {
  std::vector<dispatch_outgoing> out;
  std::vector<std::byte> heads;  // every receiver's first message, dispatch_head_bytes each
  std::byte* head(std::size_t r) { return heads.data() + r * dispatch_head_bytes; }
};

// Checks and encodes every item on the root; throws redist::error on bad input.
template <class Tensor>
void prepare_items(std::span<const nested<Tensor>> items, std::size_t size, std::size_t root,
                   std::size_t pack_below, dispatch_outbox& box) {
  box.out.resize(size);
  box.heads.resize(size * dispatch_head_bytes);
  if (items.size() > size)
    fail("redist::dispatch: ", items.size(), " items for a communicator of ", size,
         " ranks; at most one item per rank");
  for (std::size_t r = 0; r < items.size(); ++r)
    box.out[r] = prepare_item(items[r], r, pack_below, r != root, box.head(r));
  for (std::size_t r = items.size(); r < size; ++r) {
    const dispatch_header nothing{dispatch_status::nothing, 0, 0, pack_below};
    store_bytes(box.head(r), nothing);
  }
}

// The root's sends, once every rank agreed. own() takes the root's own item while they are under way.
template <class Comm, class Own>
void dispatch_send(const Comm& comm, dispatch_outbox& box, Own&& own) {
  const auto size = static_cast<std::size_t>(comm.size());
  const auto root = static_cast<std::size_t>(comm.rank());
  // Declared after the buffers they read, so that they complete (or are waited for) before those go.
  std::vector<typename Comm::request> requests;
  auto send = [&](const std::byte* data, std::size_t bytes, std::size_t r) {
    requests.push_back(comm.isend({data, bytes}, static_cast<int>(r), dispatch_tag));
  };
  // First every receiver's first message, so that all can start decoding; then the rest.
  for (std::size_t r = 0; r < size; ++r) {
    if (r != root) send(box.head(r), dispatch_head_bytes, r);
  }
  for (std::size_t r = 0; r < size; ++r) {
    if (r != root && box.out[r].rest_bytes != 0) send(box.out[r].rest.get(), box.out[r].rest_bytes, r);
  }
  for (std::size_t r = 0; r < size; ++r) {
    if (r == root) continue;
    for (const auto& t : box.out[r].direct) send(t.data, t.bytes, r);
  }
  own();  // the root's own item, while the sends are under way
  wait_every(requests);
}

// A receiver's side: the first message, then the rest of the stream, then each large tensor straight into
// the decoded tree.
template <class Tensor, class Comm>
nested<Tensor> dispatch_receive(const Comm& comm, int root) {
  std::vector<std::byte> head(dispatch_head_bytes);
  comm.irecv(head, root, dispatch_tag).wait();
  const auto h = load_bytes<dispatch_header>(head.data());
  if (h.status == dispatch_status::nothing) return {};
  if (h.status != dispatch_status::item) {
    fail("redist::dispatch: the first message from root ", root, " is not dispatch's (status ",
         static_cast<std::uint64_t>(h.status), "); do all ranks call dispatch with the same root?");
  }
  // Not zeroed: the inline bytes and the second message fill it.
  const auto total = static_cast<std::size_t>(h.schema_bytes + h.packed_bytes);
  const auto owner = std::make_unique_for_overwrite<std::byte[]>(total);
  const std::span<std::byte> stream(owner.get(), total);
  const std::size_t inline_bytes = std::min(stream.size(), dispatch_inline_bytes);
  host_space::copy(stream.data(), head.data() + sizeof h, inline_bytes);

  std::vector<typename Comm::request> requests;  // after the buffers they write into: completed first
  if (stream.size() > inline_bytes)
    requests.push_back(comm.irecv(stream.subspan(inline_bytes), root, dispatch_tag));
  const auto schema_bytes = static_cast<std::size_t>(h.schema_bytes);
  if (schema_bytes > inline_bytes) wait_every(requests);
  nested<Tensor> tree = decode_schema<Tensor>(stream.first(schema_bytes));
  std::vector<segment> packed;
  tree.for_each_tensor([&](Tensor& t) {
    std::size_t bytes = 0;
    tensor_bytes(t, bytes);  // the schema decoded, so its sizes are valid
    if (bytes == 0) return;
    auto* data = static_cast<std::byte*>(tensor_traits<Tensor>::data(t));
    if (bytes < h.pack_below) {
      packed.push_back({data, bytes});
    } else {
      requests.push_back(comm.irecv({data, bytes}, root, dispatch_tag));
    }
  });
  if (!requests.empty() && schema_bytes <= inline_bytes && stream.size() > inline_bytes) {
    requests.front().wait();  // the rest of the stream; the tensors' receives stay under way
  }
  host_space::scatter(stream.data() + schema_bytes, packed);
  wait_every(requests);
  return tree;
}

// Both overloads of redist::dispatch, which differ only in how the root gets its own item: take_mine(r)
// returns it (a copy, or a move out of the caller's vector), called on the root once the other items are on
// their way.
template <class Tensor, class Comm, class TakeMine>
nested<Tensor> dispatch_items(const Comm& comm, std::span<const nested<Tensor>> items, int root,
                              std::size_t pack_below, TakeMine&& take_mine) {
  static_assert(tensor_space<Tensor> == memory_space::host,
                "redist::dispatch: the tensors must be in host memory (memory_space::host), which the "
                "communicators that exist (mpi, self) read and write");
  constexpr const char* who = "redist::dispatch";
  const auto size = static_cast<std::size_t>(comm.size());
  dispatch_outbox box;
  std::string problem;
  if (root < 0 || root >= comm.size()) {
    problem = str(who, ": root ", root, " is out of range for a communicator of ", comm.size(), " ranks");
  } else if (comm.rank() == root) {
    try {
      prepare_items(items, size, static_cast<std::size_t>(root), pack_below, box);
    } catch (const error& e) {
      problem = e.what();
    } catch (const std::exception& e) {
      problem = str(who, ": on the root, while preparing the items: ", e.what());
    }
  }
  agree(comm, who, problem, call_description().add("op", who).add("root", root));
  if (comm.rank() != root) return dispatch_receive<Tensor>(comm, root);
  nested<Tensor> mine;
  dispatch_send(comm, box, [&] {
    const auto r = static_cast<std::size_t>(root);
    if (r < items.size()) mine = take_mine(r);
  });
  return mine;
}

}  // namespace detail

// Scatters items from `root` to the ranks of `comm` (any communicator, a sub-communicator too: root and the
// destinations are ranks of comm): rank r gets items[r]. Collective: every rank of comm calls it with the
// same root (options are read on the root only). `items` is read on the root only (other ranks pass {}); it
// may hold fewer items than ranks, and rank r >= items.size() gets an empty list. The root gets a deep copy
// of its own item (the overload taking a vector by rvalue moves it instead). What comes back has the item's
// structure exactly (kinds, field names and order, nesting), dtypes, shapes and bytes, in tensors allocated
// on the receiving rank.
//
// Cost: one allreduce (every rank agrees on the root and on whether the root's items are sound). Each
// receiver gets one message of 1 KiB holding its schema and the tensors below
// options.pack_below bytes (a second message when they take more), then one message per larger tensor,
// sent from the item's memory and received into the result's tensor. The root sends nothing to itself and
// returns once its sends are complete. Messages of consecutive calls on one communicator never cross (one
// tag, matched in order), so no barrier is needed between calls, whatever their roots.
//
// Bad input throws the same redist::error on every rank, before any tensor byte moves, and leaves comm
// usable: ranks that pass different roots, a root out of range; on the root, more items than ranks, a tensor
// that is not contiguous (when its traits say), has a negative extent, an overflowing size or no data, or an
// item nested deeper than max_nested_depth. A receiver that
// cannot allocate its item (std::bad_alloc) is not recovered: the root would wait for it, as MPI would.
template <allocatable_tensor Tensor = host_tensor, communicator Comm>
nested<Tensor> dispatch(const Comm& comm, std::type_identity_t<std::span<const nested<Tensor>>> items,
                        int root, const dispatch_options& options = {}) {
  return detail::dispatch_items<Tensor>(comm, items, root, options.pack_below,
                                        [&](std::size_t r) { return detail::clone_item(items[r]); });
}

// The same, but the root moves its own item into the result (no copy) instead of copying it, leaving
// items[root] moved-from; the other items are left as they were. Other ranks may pass an empty vector.
template <allocatable_tensor Tensor, communicator Comm>
nested<Tensor> dispatch(const Comm& comm, std::vector<nested<Tensor>>&& items, int root,
                        const dispatch_options& options = {}) {
  return detail::dispatch_items<Tensor>(comm, std::span<const nested<Tensor>>(items), root,
                                        options.pack_below,
                                        [&](std::size_t r) { return std::move(items[r]); });
}

}  // namespace redist
