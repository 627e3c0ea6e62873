// The plan a planner makes: broadcast, gather, scatter and all-to-all steps, grouped in stages.
// Ranks are ranks of the communicator the plan will run on; every step names the ids each rank handles and
// its keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "redist/core/sequence_batch.hpp"
#include "redist/detail/text.hpp"

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

// One transfer of a step: `src` sends the samples `*ids` of the step's keys [first_key, first_key +
// key_count) to `dst`. `list` names the id list sent: 0 for a broadcast, the source's (destination's) index
// for a gather (scatter), the payload for an all-to-all; transfers of one list send the same bytes. A
// gather's root among its sources and a scatter's among its destinations make transfers from a rank to
// itself, which move nothing.
struct step_transfer {
  int src = 0;
  int dst = 0;
  const id_list* ids = nullptr;
  std::uint32_t first_key = 0;
  std::uint32_t key_count = 0;
  std::uint32_t list = 0;
};

inline const std::vector<std::string>& keys_of(const step& s) noexcept {
  return std::visit([](const auto& x) -> const std::vector<std::string>& { return x.keys; }, s);
}

// The one decoder of a step, which the cost model, the checker, the plan's fingerprint, the checks before a
// transfer and the all-to-all policy read steps through: f(step_transfer) for each transfer in the step's
// order (a broadcast's destinations, a gather's sources, a scatter's destinations, an all-to-all's routes).
// What is malformed (id lists that do not match the ranks, a route naming a payload that is not there or of
// another source, a payload naming a key that is not there) goes to defect(text) and is skipped. It takes a
// step or one of its alternatives.
template <class Step, class F, class Defect>
requires(!std::is_same_v<Step, step>) void for_each_transfer(const Step& x, F&& f, Defect&& defect) {
  const auto nkeys = static_cast<std::uint32_t>(x.keys.size());
  if constexpr (std::is_same_v<Step, broadcast_step>) {
    for (int d : x.dsts) f(step_transfer{x.root, d, &x.ids, 0, nkeys, 0});
  } else if constexpr (std::is_same_v<Step, all_to_all_step>) {
    for (const auto& r : x.routes) {
      if (r.payload >= x.payloads.size()) {
        defect(detail::str("route to rank ", r.dst, " names payload ", r.payload, " of ", x.payloads.size()));
        continue;
      }
      const auto& pl = x.payloads[r.payload];
      if (pl.src != r.src) {
        defect(detail::str("route from rank ", r.src, " uses payload ", r.payload, " of rank ", pl.src));
        continue;
      }
      if (pl.key >= nkeys) {
        defect(detail::str("payload ", r.payload, " names key ", pl.key, " of ", nkeys));
        continue;
      }
      f(step_transfer{r.src, r.dst, &pl.ids, pl.key, 1, r.payload});
    }
  } else {
    constexpr bool gather = std::is_same_v<Step, gather_step>;
    const auto& peers = [&]() -> const std::vector<int>& {
      if constexpr (gather)
        return x.srcs;
      else
        return x.dsts;
    }();
    if (x.ids.size() != peers.size())
      defect(detail::str(gather ? "gather" : "scatter", " has ", x.ids.size(), " id lists for ", peers.size(),
                         gather ? " sources" : " destinations"));
    for (std::size_t i = 0; i < peers.size() && i < x.ids.size(); ++i) {
      const auto list = static_cast<std::uint32_t>(i);
      if constexpr (gather)
        f(step_transfer{peers[i], x.root, &x.ids[i], 0, nkeys, list});
      else
        f(step_transfer{x.root, peers[i], &x.ids[i], 0, nkeys, list});
    }
  }
}

template <class F, class Defect>
void for_each_transfer(const step& s, F&& f, Defect&& defect) {
  std::visit([&](const auto& x) { for_each_transfer(x, f, defect); }, s);
}

}  // namespace redist
