// redist::plan_cache: the one-call form's catalog and plan, kept between calls that repeat one request.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redist/core/catalog.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/plan/steps.hpp"

namespace redist {

// What the one-call form derives from every rank's request: the ranks' metadata, the catalog, the keys and
// the plan. A loop that repeats one redistribution (the same batches' metadata, the same wanted ids, the
// same options) passes one plan_cache through redistribute_options::plans: the call still allgathers every
// rank's request, which is how it knows the requests are the last call's, and then skips decoding and
// planning. Every rank sees the same requests, so every rank hits or misses alike. Not shared between
// threads.
class plan_cache {
 public:
  struct derived {
    std::vector<sequence_batch<host_tensor>> metas;  // per rank
    catalog cat;
    std::vector<std::string> keys;
    plan p;
    // The rank whose share of the pre-transfer checks passed against these requests, or -1: a call that
    // repeats them from that rank, its batch holding data, repeats only the checks of values (a lossy
    // staging).
    int checked_rank = -1;
  };

  // What was derived from `requests` (every rank's, as the allgather returned them) with the options
  // `call` describes, or null.
  derived* find(std::string_view call, std::span<const std::byte> requests) noexcept {
    if (!kept_ || call != call_ ||
        !std::equal(requests.begin(), requests.end(), requests_.begin(), requests_.end()))
      return nullptr;
    ++reuses_;
    return &*kept_;
  }
  // How many calls took their plan from here.
  std::size_t reuses() const noexcept { return reuses_; }
  derived& keep(std::string_view call, std::span<const std::byte> requests, derived d) {
    kept_.reset();
    call_.assign(call);
    requests_.assign(requests.begin(), requests.end());
    return kept_.emplace(std::move(d));
  }
  void clear() noexcept {
    kept_.reset();
    call_.clear();
    requests_.clear();
  }

 private:
  std::string call_;
  std::vector<std::byte> requests_;
  std::optional<derived> kept_;
  std::size_t reuses_ = 0;
};

}  // namespace redist
