// The plan a planner makes: broadcast, gather, scatter and all-to-all steps, grouped in stages.
// Ranks are ranks of the communicator the plan will run on; every step names the ids each rank handles and
// its keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "redist/core/sequence_batch.hpp"

namespace redist {

using id_list = std::vector<sample_id>;

// root sends the samples `ids` (keys `keys`) to every rank of `dsts`; with one destination it is a send/recv.
struct broadcast_step {
  int root = 0;
  std::vector<int> dsts;  // ascending, root not among them
  id_list ids;
  std::vector<std::string> keys;
  friend bool operator==(const broadcast_step&, const broadcast_step&) = default;
};

// Every rank srcs[i] sends ids[i] to root.
struct gather_step {
  int root = 0;
  std::vector<int> srcs;  // ascending; may include root
  std::vector<id_list> ids;
  std::vector<std::string> keys;
  friend bool operator==(const gather_step&, const gather_step&) = default;
};

// root sends ids[i] to every rank dsts[i].
struct scatter_step {
  int root = 0;
  std::vector<int> dsts;  // ascending; may include root
  std::vector<id_list> ids;
  std::vector<std::string> keys;
  friend bool operator==(const scatter_step&, const scatter_step&) = default;
};

// Every rank sends to every rank at once. A payload is the samples of one key that one source packs once,
// however many destinations receive it (the tensor/pipe replicas of one data-parallel rank).
struct all_to_all_step {
  struct payload {
    int src = 0;
    std::uint32_t key = 0;  // index into keys
    id_list ids;            // in the order the destinations asked for them
    friend bool operator==(const payload&, const payload&) = default;
  };
  struct route {
    int src = 0;
    int dst = 0;
    std::uint32_t payload = 0;  // index into payloads
    friend bool operator==(const route&, const route&) = default;
  };
  std::vector<std::string> keys;
  std::vector<payload> payloads;
  std::vector<route> routes;  // ascending by (src, dst, key): at most one payload per key and pair
  friend bool operator==(const all_to_all_step&, const all_to_all_step&) = default;
};

using step = std::variant<broadcast_step, gather_step, scatter_step, all_to_all_step>;

// Stages run in order. The steps of one stage have distinct roots and disjoint destinations, and read only
// data held before the stage starts, so they may run at once.
struct plan {
  int ranks = 0;
  std::vector<std::vector<step>> stages;
  friend bool operator==(const plan&, const plan&) = default;

  std::size_t step_count() const noexcept {
    std::size_t n = 0;
    for (const auto& s : stages) n += s.size();
    return n;
  }
};

}  // namespace redist
