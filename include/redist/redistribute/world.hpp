// redist::gather_metadata: every rank's batch metadata on every rank, with the catalog the plan-based form of
// redistribute() needs and the tracker the planners take.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/comm/communicator.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/metadata_codec.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist {

// What every rank knows of every rank's samples: their ids, keys and seqlens, no tensors.
struct world_metadata {
  std::vector<sequence_batch<host_tensor>> batches;  // per rank of the communicator, metadata only
  catalog cat;                                       // for redistribute(comm, store, plan, cat)
  storage_tracker tracker;                           // for plan_all_to_all and the other planners
};

// Collective: the agreement's allgather (a rank whose batch is invalid makes every rank throw the same
// redist::error, naming it), which gathers the sizes too, and one allgatherv of every rank's metadata in its
// compact encoding. Every rank then decodes the
// same bytes, so a conflict between ranks (one key with two dtypes, an id held with different seqlens) is the
// same redist::error everywhere.
template <communicator Comm, class Tensor>
world_metadata gather_metadata(const Comm& comm, const sequence_batch<Tensor>& local) {
  constexpr const char* who = "redist::gather_metadata";
  std::vector<std::byte> mine;
  const std::string problem = detail::problem_of([&] {
    local.validate();
    mine = encode_metadata(local);
  });
  const std::vector<std::uint64_t> sizes =
      detail::agree(comm, who, problem, detail::call_description().add("op", who), mine.size());
  const std::vector<std::byte> all = comm.allgatherv(mine, std::span<const std::uint64_t>(sizes));
  std::vector<sequence_batch<host_tensor>> batches;
  catalog cat;
  for (std::size_t r = 0, at = 0; r < sizes.size(); at += sizes[r], ++r) {
    batches.push_back(decode_metadata(std::span(all).subspan(at, sizes[r])));
    cat.add(batches.back(), static_cast<int>(r));
  }
  auto tracker = storage_tracker::from_batches(batches);
  return {std::move(batches), std::move(cat), std::move(tracker)};
}

}  // namespace redist
