// redist::shard_scatter: tensor-parallel weight loading. Owners load full tensors one at a time, send each
// shard that is one run of its tensor from it and pack the others, and every rank ends with its shard of each
// sharded tensor and a copy of each replicated one, batch by batch, one all-to-all per batch; plan_shards is
// its pure plan (owners, batches).
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <queue>
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
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"
#include "redist/detail/hash.hpp"
#include "redist/detail/text.hpp"
#include "redist/plan/shard.hpp"
#include "redist/shard/exchange.hpp"
#include "redist/shard/layout.hpp"
#include "redist/staging/space_call.hpp"

namespace redist {

// Tensor-parallel weight loading. Every rank passes the same specs; the owner of spec i (given, or chosen by
// plan_shards to balance bytes) supplies its full tensor through load(i), called there only, once, when i's
// batch is packed, and dropped as soon as it is sliced, unless its shards are sent from it (below): then once
// its batch's transfers complete. A rank holds the full tensors sent in place of the two batches in flight
// (each batch's within about twice max_batch_bytes, but for a tensor alone over it) and one other at a time,
// plus the staging of two batches (shard_options: the caller's workspace, or allocated for the call; the
// packed shards only). Returns, in spec order, this rank's shard of each sharded tensor (the spec's shape
// with the shard dim divided by size(); rank r holds the r-th slice) and a copy of each replicated one, in
// the spec's dtype (never converted). Each result is allocated once; a replicated tensor this rank owns is
// moved from load's when that is a Tensor. load may return any tensor_like type of Tensor's memory space by
// value (a host_tensor_view of a memory-mapped file works for host tensors).
//
// Communication: one allgather checks the specs; then per batch one group of point-to-point transfers (and
// its wait) moves every owner's shards at once, and batch b + 1 is loaded and packed while batch b
// moves (as far as the transport moves data by itself: Open MPI 4.1 between the processes of one node copies
// a large message inside MPI calls, so there the batches' copies take turns: at 2 ranks, 1 or 20 batches of a
// 316 MB model took the same time; the batch size then bounds the staging memory). A batch in which no byte
// crosses ranks is not exchanged, unless it is the last, which also carries every rank's success flag. A
// shard of 64 KiB or more that is one run of its tensor (a cut along dim 0, or after extents of 1 only; a
// replicated tensor) is sent from the loaded tensor itself, with no packing copy, its owner's own shard
// copied while the batch moves; the others are packed into staging. A replicated tensor travels as size() -
// 1 copies from its owner (keep large tensors sharded). Each rank receives its shards (or copies) of 64 KiB
// or more straight into its results; smaller ones land in staging and are copied once more. Over an
// mpi_communicator an owner sends each rank one message per batch (a derived datatype over the tensors'
// memory and its staging, mpi_p2p_group::send_pieces); over other communicators (NCCL, mpi_device) each
// shard sent from its tensor is a message of its own.
//
// Errors, the same redist::error on every rank, before any data moves: specs or budgets that differ between
// ranks; invalid specs (duplicate names, negative extents, sizes that overflow, shard dims out of range or
// whose extent does not divide by size(), owners out of range); a workspace too small, staging or results
// that cannot be allocated; a memory space on another stream than the communicator's. A load that throws (its
// text becomes the message) or returns a tensor unlike its spec fails on its owner only, while batches move:
// that rank loads nothing more and sends filler, and after the last batch every rank throws the lowest
// failing rank's message. Nothing is returned then, and the communicator stays usable.
//
// Device tensors pass the memory space of the stream the call is ordered on last (a redist::cuda_space on
// the communicator's stream), e.g. shard_scatter<cuda_tensor>(comm, specs, load, {}, cuda_space(stream)).
// load(i) then returns a device tensor of that space, whose memory must be ordered on that stream: the call
// drops it once the copies that slice it are queued, or its batch's transfers complete when its shards are
// sent from it (a cuda_tensor allocated inside load is ordered so, since the call's allocations are made on
// its stream). Results, and the staging when the caller gives no workspace, are allocated on the stream;
// options.workspace must be memory of the space. Slicing a packed tensor is one table (one launch however
// many rows it cuts), a batch's own shards of the tensors sent in place one more, unpacking a batch's staged
// pieces one more; the success flags are one fill per peer, read back after the last batch by one copy to
// the host, the one wait for the stream the call itself makes. None of its copies touches host memory (the
// communicator may stage).
template <allocatable_tensor Tensor = host_tensor, communicator Comm, shard_loader Load,
          class Space = host_space>
std::vector<named_tensor<Tensor>> shard_scatter(const Comm& comm, std::span<const shard_spec> specs,
                                                Load&& load, const shard_options& options = {},
                                                const Space& space = {}) {
  detail::require_space<Tensor, Space>();
  using run_type = detail::shard_run<Tensor, Comm, std::remove_reference_t<Load>, Space>;
  static_assert(tensor_space<typename run_type::loaded> == tensor_space<Tensor>,
                "redist::shard_scatter: load(i) must return a tensor in the memory space of Tensor (host "
                "tensors for host results, device tensors of the call's space for device results)");
  [[maybe_unused]] const auto scope = detail::allocation_scope(space);
  run_type run(comm, specs, load, options, space);
  run.prepare();
  run.run();
  return run.take();
}

}  // namespace redist
