// redist::dispatch: a data loader's scatter of one nested item (named tensors and lists) per rank from a
// root: each item's schema and small tensors in one message, its large tensors sent from the item's own
// memory (host or device).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
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
#include "redist/core/memory_space.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/byte_codec.hpp"
#include "redist/detail/checked.hpp"
#include "redist/detail/debug.hpp"
#include "redist/detail/text.hpp"
#include "redist/dispatch/items.hpp"
#include "redist/staging/buffer.hpp"
#include "redist/staging/copy_list.hpp"
#include "redist/staging/space_call.hpp"

namespace redist {
namespace detail {

// Completes every request and forgets them, then rethrows the first failure.
template <class Request>
void wait_every(std::vector<Request>& requests) {
  wait_all(requests);
  requests.clear();
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
// the decoded tree; `received` counts the bytes.
template <class Tensor, class Comm, class Space>
nested<Tensor> dispatch_receive(const Comm& comm, int root, const Space& space, std::uint64_t& received) {
  std::vector<std::byte> head(dispatch_head_bytes);
  comm.irecv(head, root, dispatch_tag).wait();
  received = dispatch_head_bytes;
  const auto h = load_bytes<dispatch_header>(head.data());
  if (h.status == dispatch_status::nothing) return {};
  if (h.status != dispatch_status::item) {
    fail("redist::dispatch: the first message from root ", root, " is not dispatch's (status ",
         static_cast<std::uint64_t>(h.status), "); do all ranks call dispatch with the same root?");
  }
  // Sizes no sound root sends: nothing is allocated from them.
  if (h.packed_bytes > h.tensor_bytes || h.schema_bytes > SIZE_MAX - h.packed_bytes) {
    fail("redist::dispatch: the first message from root ", root, " is corrupt: ", h.schema_bytes,
         " bytes of schema and ", h.packed_bytes, " packed for ", h.tensor_bytes, " bytes of tensors");
  }
  const auto total = static_cast<std::size_t>(h.schema_bytes + h.packed_bytes);
  std::unique_ptr<std::byte[]> owner;  // not zeroed: the inline bytes and the second message fill it
  allocating("redist::dispatch", comm.rank(), "its item's schema and packed tensors",
             [&] { owner = std::make_unique_for_overwrite<std::byte[]>(total); });
  const std::span<std::byte> stream(owner.get(), total);
  const std::size_t inline_bytes = std::min(stream.size(), dispatch_inline_bytes);
  received += total - inline_bytes;
  host_space::copy(stream.data(), head.data() + sizeof h, inline_bytes);

  nested<Tensor> tree;  // the tensors receives write into, declared first so that it outlives them
  std::vector<typename Comm::request> requests;  // after the buffers they write into: completed first
  if (stream.size() > inline_bytes)
    requests.push_back(comm.irecv(stream.subspan(inline_bytes), root, dispatch_tag));
  const auto schema_bytes = static_cast<std::size_t>(h.schema_bytes);
  if (schema_bytes > inline_bytes) wait_every(requests);
  // Allocates no more than the header declares; the schema must then account for every byte of it, so
  // that each receive below has the size of the root's send.
  tree = decode_schema<Tensor>(stream.first(schema_bytes), h.tensor_bytes);
  std::uint64_t declared = 0, declared_packed = 0;
  tree.for_each_tensor([&](const Tensor& t) {
    std::size_t bytes = 0;
    tensor_bytes(t, bytes);  // the schema decoded, so its sizes are valid and add up within tensor_bytes
    declared += bytes;
    if (bytes != 0 && bytes < h.pack_below) declared_packed += bytes;
  });
  if (declared != h.tensor_bytes || declared_packed != h.packed_bytes) {
    fail("redist::dispatch: the schema from root ", root, " declares ", declared, " bytes of tensors, ",
         declared_packed, " of them packed, where its header says ", h.tensor_bytes, " and ", h.packed_bytes);
  }
  std::vector<segment> packed;
  tree.for_each_tensor([&](Tensor& t) {
    std::size_t bytes = 0;
    tensor_bytes(t, bytes);
    if (bytes == 0) return;
    auto* data = static_cast<std::byte*>(tensor_traits<Tensor>::data(t));
    if (bytes < h.pack_below) {
      packed.push_back({data, bytes});
    } else {
      requests.push_back(comm.irecv({data, bytes}, root, dispatch_tag));
      received += bytes;
    }
  });
  if (!requests.empty() && schema_bytes <= inline_bytes && stream.size() > inline_bytes) {
    requests.front().wait();  // the rest of the stream; the tensors' receives stay under way
  }
  const std::byte* packed_part = stream.data() + schema_bytes;
  if constexpr (Space::space == memory_space::host) {
    host_space::scatter(packed_part, packed);
  } else if (!packed.empty()) {
    // Device tensors are written by one table, from device staging that one upload fills.
    space_buffer<Space> staging(space);
    const std::size_t bytes = total_bytes(std::span<const segment>(packed));
    space.from_host(staging.resize(bytes).data(), packed_part, bytes);
    space.scatter(staging.data(), packed);
  }
  wait_every(requests);
  return tree;
}

// REDIST_DEBUG's line on the root: what it sent, in all and (at TRACE) to each receiver.
template <class Comm>
void report_dispatch(const Comm& comm, const dispatch_outbox& box, std::size_t items, std::size_t pack_below,
                     const debug_op_timer& timer) {
  std::uint64_t sent = 0;
  std::string peers;
  for (std::size_t r = 0; r < box.out.size(); ++r) {
    if (static_cast<int>(r) == comm.rank()) continue;
    std::uint64_t bytes = dispatch_head_bytes + box.out[r].rest_bytes;
    for (const auto& t : box.out[r].direct) bytes += t.bytes;
    sent += bytes;
    peers +=
        str(peers.empty() ? "; to " : ", ", r, ": ", bytes, " B (", box.out[r].direct.size(), " direct)");
  }
  debug_print(comm.rank(), comm.size(), "redist::dispatch: root ", comm.rank(), ", ", items, " items to ",
              comm.size() - 1, " receivers, pack_below ", pack_below, ": ", timer.figures(sent, 0),
              debug_traces() ? peers : std::string());
}

// Both overloads of redist::dispatch, which differ only in how the root gets its own item: take_mine(r)
// returns it (a copy, or a move out of the caller's vector), called on the root once the other items are on
// their way. Every copy of tensor bytes is made in `space`.
template <class Tensor, class Comm, class Space, class TakeMine>
nested<Tensor> dispatch_items(const Comm& comm, std::span<const nested<Tensor>> items, int root,
                              std::size_t pack_below, const Space& space, TakeMine&& take_mine) {
  require_space<Tensor, Space>();
  [[maybe_unused]] const auto scope = allocation_scope(space);
  constexpr const char* who = "redist::dispatch";
  const auto size = static_cast<std::size_t>(comm.size());
  dispatch_outbox box;
  std::string problem;
  if (root < 0 || root >= comm.size()) {
    problem = str(who, ": root ", root, " is out of range for a communicator of ", comm.size(), " ranks");
  }
  if (problem.empty()) problem = space_problem(who, comm, space);
  if (problem.empty() && comm.rank() == root) {
    try {
      prepare_items(items, size, static_cast<std::size_t>(root), pack_below, box, space);
    } catch (const error& e) {
      problem = e.what();
    } catch (const std::exception& e) {
      problem = str(who, ": on the root, while preparing the items: ", e.what());
    }
  }
  agree(comm, who, problem, call_description().add("op", who).add("root", root));
  std::optional<debug_op_timer> timer;  // REDIST_DEBUG: at INFO, the root prints
  if (debug_prints(comm.rank(), root)) [[unlikely]]
    timer.emplace();
  if (comm.rank() != root) {
    std::uint64_t received = 0;
    nested<Tensor> tree = dispatch_receive<Tensor>(comm, root, space, received);
    if (timer)
      debug_print(comm.rank(), comm.size(), who, ": from root ", root, ": ", timer->figures(0, received));
    return tree;
  }
  nested<Tensor> mine;
  dispatch_send(comm, box, [&] {
    const auto r = static_cast<std::size_t>(root);
    if (r < items.size()) mine = take_mine(r);
  });
  if (timer) report_dispatch(comm, box, items.size(), pack_below, *timer);
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
// Cost: one allgather (every rank agrees on the root and on whether the root's items are sound). Each
// receiver gets one message of 1 KiB holding its schema and the tensors below
// options.pack_below bytes (a second message when they take more), then one message per larger tensor,
// sent from the item's memory and received into the result's tensor. The root sends nothing to itself and
// returns once its sends are complete. Messages of consecutive calls on one communicator never cross (one
// tag, matched in order), so no barrier is needed between calls, whatever their roots.
//
// Bad input throws the same redist::error on every rank, before any tensor byte moves, and leaves comm
// usable: ranks that pass different roots, a root out of range; on the root, more items than ranks, a tensor
// that is not contiguous (when its traits say), has a negative extent, an overflowing size or no data, or an
// item nested deeper than max_nested_depth; a rank whose space is on another stream than its communicator.
// A receiver allocates no more than the root's first message says the item's tensors take, and refuses a
// schema that does not account for exactly that. One that cannot allocate its item throws a redist::error
// naming itself, but is not recovered: the root waits for it, as MPI would.
//
// Device tensors pass the memory space of the stream the call is ordered on last (a redist::cuda_space on
// the communicator's stream), e.g. dispatch<cuda_tensor>(comm, items, 0, {}, cuda_space(stream)); results
// are allocated on that stream. Large tensors go device to device through the communicator as above. The
// small ones are packed by one table into device staging on the root and read into the host messages (one or
// two copies per receiver, each a wait for the stream: the root waits for the items' producers), and a
// receiver uploads its packed bytes with one copy and unpacks them with one table; the root's own copy is one
// table. Nothing reads tensor bytes on the host, and no copy or launch is made per tensor.
template <allocatable_tensor Tensor = host_tensor, communicator Comm, class Space = host_space>
nested<Tensor> dispatch(const Comm& comm, std::type_identity_t<std::span<const nested<Tensor>>> items,
                        int root, const dispatch_options& options = {}, const Space& space = {}) {
  return detail::dispatch_items<Tensor>(comm, items, root, options.pack_below, space, [&](std::size_t r) {
    detail::phase_copies<Space> copies;
    nested<Tensor> mine = detail::clone_item(items[r], copies);
    copies.run(space);
    return mine;
  });
}

// The same, but the root moves its own item into the result (no copy) instead of copying it, leaving
// items[root] moved-from; the other items are left as they were. Other ranks may pass an empty vector.
template <allocatable_tensor Tensor, communicator Comm, class Space = host_space>
nested<Tensor> dispatch(const Comm& comm, std::vector<nested<Tensor>>&& items, int root,
                        const dispatch_options& options = {}, const Space& space = {}) {
  return detail::dispatch_items<Tensor>(comm, std::span<const nested<Tensor>>(items), root,
                                        options.pack_below, space,
                                        [&](std::size_t r) { return std::move(items[r]); });
}

}  // namespace redist
