// redist::redistribute: executes a plan against this rank's store, one step policy per step type, after every
// rank has agreed the inputs are sound; and the one-call form that exchanges metadata, plans and executes.
#pragma once

#include <cstddef>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/error.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/text.hpp"
#include "redist/options.hpp"
#include "redist/plan/steps.hpp"
#include "redist/redistribute/execute.hpp"
#include "redist/redistribute/one_call.hpp"
#include "redist/redistribute/world.hpp"
#include "redist/staging/byte_staging.hpp"
#include "redist/staging/float32_staging.hpp"
#include "redist/staging/policy.hpp"
#include "redist/staging/space_call.hpp"

namespace redist {

// Executes `p` (the same plan on every rank of comm) against this rank's store. `cat` describes every (id,
// key) the plan moves and must be the same on every rank (gather_metadata() makes it, and the tracker the
// planners take). Received samples are added to the store; nothing
// else changes. Before any byte moves, every rank checks its share and the ranks agree in one allgather,
// which also compares a fingerprint of the plan, of what it reads of the catalog (every moved pair's dtype,
// trailing shape and seqlens), and the staging, its budget and allow_lossy: any rank's problem, or calls
// that differ, become the same redist::error on every rank, with every store unchanged.
// Per-sample metadata does not travel in this form: received samples come without it (every rank's is in
// gather_metadata()'s batches, by id). Policies replace the default policy of their step_type. A rank that
// cannot allocate (std::bad_alloc) once data moves, a received tensor or staging, is not recovered: its peers
// would wait for it, as MPI would; the staging budget bounds what it allocates.
template <staging_policy Staging = byte_staging, class... Policies, communicator Comm, tensor_like Tensor>
void redistribute(const Comm& comm, sample_store<Tensor>& store, const plan& p, const catalog& cat,
                  const redistribute_options& opts, const space_of<Tensor>& space) {
  auto call = detail::describe_redistribute<Staging>(opts);
  call.add("plan", detail::str(p.step_count(), " steps of fingerprint ", detail::plan_hash(p)))
      .add("catalog", detail::str("fingerprint ", detail::catalog_hash(p, cat), " of the plan's pairs"));
  [[maybe_unused]] const auto scope = detail::allocation_scope(space);
  detail::execute<Staging, Policies...>(
      comm, store, p, cat, opts, static_cast<sequence_batch<Tensor>*>(nullptr), call,
      detail::problem_before_transfer<Staging>(comm, store, p, cat, opts, space), space);
}

// The one-call form. Every rank passes its local batch and the ids it wants; every rank gets back a batch of
// exactly those ids, in that order, with opts.keys (or every key, ascending by name), keys packed in that
// order. Per-sample metadata: a name comes along when every rank that holds samples has it, each value from
// the lowest rank holding the id.
//
// Costs, before any sample moves, three collectives: the allgather every op opens with (the agreement on the
// call's options and every rank's batch being valid, so that a rank calling another op fails alike instead
// of hanging; it also gathers the size of every rank's request), one allgatherv of every rank's request (a
// description of its call, its batch's metadata in a compact encoding, not the data, and the ids it wants)
// and one allgather to agree on the checks of the plan-based form. Options that differ between ranks
// (pattern, keys and their order, staging, budget, ranks_per_node, allow_lossy), a rank's invalid batch and a
// plan that cannot be made (an unknown key, ranks_per_node 0, an id no rank holds) fail the same way on every
// rank, naming what differs or the rank at fault, before any sample moves.
template <staging_policy Staging = byte_staging, class... Policies, communicator Comm, class Tensor>
sequence_batch<Tensor> redistribute(const Comm& comm, const sequence_batch<Tensor>& local,
                                    const std::vector<sample_id>& wanted, const redistribute_options& opts,
                                    const space_of<Tensor>& space) {
  static_assert(
      allocatable_tensor<Tensor>,
      "redist::redistribute: the one-call form creates the result's tensors; tensor_traits<T> lacks "
      "`static T allocate(redist::dtype, std::span<const std::int64_t> shape)`");
  if constexpr (allocatable_tensor<Tensor>) {  // else only the assertion speaks
    [[maybe_unused]] const auto scope = detail::allocation_scope(space);
    return detail::one_call<Staging, Policies...>(comm, local, wanted, opts,
                                                  static_cast<sequence_batch<Tensor>*>(nullptr), space);
  } else {
    return {};
  }
}

// The one-call form into `out`, for loops that repeat a redistribution: when out already has the result's
// layout (these ids in this order, the same keys, seqlens, dtypes and trailing shapes, tensors present, as
// the previous call left it), its tensors are filled in place and nothing tensor-sized is allocated for the
// result; otherwise out is replaced by a newly allocated result. With opts.staging set as well, the
// exchange's packing lands in that kept workspace, so a repeated call allocates no tensor-sized memory at
// all; with opts.plans too, a call whose every rank's request is the last call's skips decoding and planning.
// Costs and errors as redistribute(); on an error out keeps its tensors and metadata (their bytes may have
// been written only if the error came while data moved).
template <staging_policy Staging = byte_staging, class... Policies, communicator Comm, class Tensor>
void redistribute_into(const Comm& comm, const sequence_batch<Tensor>& local,
                       const std::vector<sample_id>& wanted, sequence_batch<Tensor>& out,
                       const redistribute_options& opts, const space_of<Tensor>& space) {
  static_assert(allocatable_tensor<Tensor>,
                "redist::redistribute_into: the one-call form creates the result's tensors; tensor_traits<T> "
                "lacks `static T allocate(redist::dtype, std::span<const std::int64_t> shape)`");
  if constexpr (allocatable_tensor<Tensor>) {
    [[maybe_unused]] const auto scope = detail::allocation_scope(space);
    out = detail::one_call<Staging, Policies...>(comm, local, wanted, opts, &out, space);
  }
}

// The forms above for host tensors, whose memory space needs no stream. Device tensors name theirs: a
// redist::cuda_space on the stream every copy, cast, allocation and transfer of the call is ordered on (the
// communicator's stream, for one that has one), e.g. redistribute(comm, batch, ids, {}, cuda_space(stream)).
template <staging_policy Staging = byte_staging, class... Policies, communicator Comm, tensor_like Tensor>
void redistribute(const Comm& comm, sample_store<Tensor>& store, const plan& p, const catalog& cat,
                  const redistribute_options& opts = {}) {
  detail::require_space<Tensor, host_space>();
  if constexpr (tensor_space<Tensor> == memory_space::host)
    redistribute<Staging, Policies...>(comm, store, p, cat, opts, space_of<Tensor>{});
}
template <staging_policy Staging = byte_staging, class... Policies, communicator Comm, class Tensor>
sequence_batch<Tensor> redistribute(const Comm& comm, const sequence_batch<Tensor>& local,
                                    const std::vector<sample_id>& wanted,
                                    const redistribute_options& opts = {}) {
  detail::require_space<Tensor, host_space>();
  if constexpr (tensor_space<Tensor> == memory_space::host)
    return redistribute<Staging, Policies...>(comm, local, wanted, opts, space_of<Tensor>{});
  else
    return {};
}
template <staging_policy Staging = byte_staging, class... Policies, communicator Comm, class Tensor>
void redistribute_into(const Comm& comm, const sequence_batch<Tensor>& local,
                       const std::vector<sample_id>& wanted, sequence_batch<Tensor>& out,
                       const redistribute_options& opts = {}) {
  detail::require_space<Tensor, host_space>();
  if constexpr (tensor_space<Tensor> == memory_space::host)
    redistribute_into<Staging, Policies...>(comm, local, wanted, out, opts, space_of<Tensor>{});
}

}  // namespace redist
