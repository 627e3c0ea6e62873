// The one-call form of redistribute(): the agreement on the call, which gathers the requests' sizes, every
// rank's request allgathered (its batch's metadata and the ids it wants), the same plan made on every rank,
// the result allocated or reused, then executed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/metadata_codec.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/text.hpp"
#include "redist/options.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/redistribute/execute.hpp"
#include "redist/redistribute/plan_cache.hpp"
#include "redist/redistribute/request_codec.hpp"

namespace redist {

namespace detail {

// The metadata, catalog, keys and plan of every rank's request.
inline plan_cache::derived derive(const std::vector<request>& requests, const redistribute_options& opts) {
  plan_cache::derived d;
  d.keys = opts.keys;
  std::size_t held = 0;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    d.metas.push_back(decode_metadata(requests[r].metadata));
    d.cat.add(d.metas.back(), static_cast<int>(r));
    held += d.metas.back().size();
  }
  std::vector<id_list> wants;
  for (std::size_t r = 0; r < requests.size(); ++r) wants.push_back(wanted_ids(requests[r], r, held));
  if (d.keys.empty())
    for (const auto& k : d.cat.keys()) d.keys.push_back(k.name);
  const auto tracker = storage_tracker::from_batches(d.metas);
  const plan_options po{.ranks_per_node = opts.ranks_per_node};
  switch (opts.pattern) {
    case plan_pattern::one_hop:
      d.p = plan_all_to_all(tracker, wants, d.keys, po);
      break;
    case plan_pattern::gather_scatter:
      d.p = plan_gather_scatter(tracker, wants, d.keys, po);
      break;
    case plan_pattern::broadcast:
      d.p = plan_broadcast(tracker, wants, d.keys, po);
      break;
  }
  return d;
}

// What every rank's one-call form must have in common: the options of both forms, the pattern, the keys.
template <class Staging>
call_description describe_one_call(const redistribute_options& opts) {
  std::string keys_text = "[";
  for (const auto& k : opts.keys) keys_text += str(keys_text.size() == 1 ? "" : ", ", k);
  return describe_redistribute<Staging>(opts)
      .add("pattern", pattern_name(opts.pattern))
      .add("ranks_per_node", opts.ranks_per_node)
      .add("keys", keys_text + ']');
}

// The one-call form, into a result that takes `reuse`'s tensors when it has the result's layout already.
template <class Staging, class... Policies, class Comm, class Tensor>
sequence_batch<Tensor> one_call(const Comm& comm, const sequence_batch<Tensor>& local,
                                const std::vector<sample_id>& wanted, const redistribute_options& opts,
                                sequence_batch<Tensor>* reuse, const space_of<Tensor>& space) {
  constexpr const char* who = "redist::redistribute";
  const call_description call = describe_one_call<Staging>(opts);

  // The agreement every op opens with, on the call and this rank's batch, also gathers the size of every
  // rank's request: a rank that calls another op meets it in the same allgather and every rank throws,
  // instead of each waiting in a different collective. One allgatherv then carries every rank's request.
  std::vector<std::byte> meta;
  const std::string problem = problem_of([&] {
    local.validate();
    meta = encode_metadata(local);
  });
  const auto blob = encode_request(meta, wanted);
  const std::vector<std::uint64_t> sizes = agree(comm, who, problem, call, blob.size());
  const auto all = comm.allgatherv(blob, std::span<const std::uint64_t>(sizes));
  std::vector<request> requests;
  for (std::size_t r = 0, at = 0; r < sizes.size(); at += sizes[r], ++r)
    requests.push_back(decode_request(std::span(all).subspan(at, sizes[r]), r));

  // Every rank decodes the same bytes and plans from them with the same options: an error here is the same on
  // every rank, and so is the plan. Requests that are the last call's take its plan from the cache.
  plan_cache::derived fresh;
  plan_cache::derived* d = opts.plans != nullptr ? opts.plans->find(call.text(), all) : nullptr;
  std::string problem_here;
  if (d == nullptr) {
    problem_here = problem_of([&] { fresh = derive(requests, opts); });
    d = &fresh;
    if (opts.plans != nullptr && problem_here.empty()) {
      d = &opts.plans->keep(call.text(), all, std::move(fresh));
    }
  }
  const auto& metas = d->metas;
  const auto& cat = d->cat;
  const auto& keys = d->keys;
  const auto& p = d->p;

  sample_store<Tensor> store;
  store.borrow(local);  // no copy of this rank's samples
  // The checks before any byte moves; a cached request this rank passed them with needs them again only
  // where values matter.
  const bool checked =
      d->checked_rank == comm.rank() && local.has_data() && (Staging::lossless || opts.allow_lossy);
  if (problem_here.empty() && !checked) {
    problem_here = problem_before_transfer<Staging>(comm, store, p, cat, opts, space);
    if (problem_here.empty()) d->checked_rank = comm.rank();
  }
  // Received samples land in their final places; what this rank held is copied in once at the end. A rank
  // that cannot allocate them says so in the agreement instead of leaving the others waiting in it.
  std::optional<sequence_batch<Tensor>> out;
  reuse_taken taken = reuse_taken::nothing;
  if (problem_here.empty()) {
    problem_here = problem_of([&] {
      allocating(who, comm.rank(), "its result",
                 [&] { out.emplace(make_output<Tensor>(cat, wanted, keys, metas, reuse, taken)); });
    });
  }
  try {
    execute<Staging, Policies...>(comm, store, p, cat, opts, out ? &*out : nullptr, call, problem_here,
                                  space);
  } catch (...) {
    if (out && taken != reuse_taken::nothing) give_back(*out, *reuse, taken);
    throw;
  }
  return std::move(*out);
}

}  // namespace detail

}  // namespace redist
