// One shard_scatter call: the agreement on the specs and budget, results and staging allocated before it,
// then per batch the owners' tensors loaded, sliced and packed (shards that are one run of the tensor sent
// from it instead) while the previous batch moves; every byte copy made by the call's memory space.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
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
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/debug.hpp"
#include "redist/detail/hash.hpp"
#include "redist/detail/text.hpp"
#include "redist/plan/shard.hpp"
#include "redist/shard/layout.hpp"
#include "redist/staging/buffer.hpp"
#include "redist/staging/copy_list.hpp"
#include "redist/staging/space_call.hpp"

namespace redist {

// What shard_scatter calls on a tensor's owner: load(i) returns the full tensor of spec i, by value.
template <class Load>
concept shard_loader = std::invocable<Load&, std::size_t> &&
    tensor_like<std::remove_cvref_t<std::invoke_result_t<Load&, std::size_t>>>;

namespace detail {

// A communicator whose point-to-point groups also send one message gathered from several pieces
// (mpi_p2p_group::send_pieces): a batch then goes to each rank as one message, the pieces sent in place
// included; elsewhere each of those is a message of its own, and the receiver frames its pieces alike.
template <class Comm>
using group_of = decltype(std::declval<const Comm&>().start_group());
template <class Comm>
concept gathers_sends = requires(group_of<Comm>& g, std::span<const const_segment> pieces) {
  g.send_pieces(pieces, 0);
};

// shard_scatter's description for its agreement: the specs (as a count and a fingerprint of every name,
// dtype, shape, shard dim and owner) and the batch budget, everything the plan depends on.
inline call_description describe_shard_call(const char* who, std::span<const shard_spec> specs,
                                            const shard_options& options) {
  fingerprint h;
  for (const shard_spec& s : specs) {
    h.add(s.name).add(static_cast<std::uint64_t>(s.dtype)).add_all(s.shape);
    h.add(s.shard_dim ? static_cast<std::uint64_t>(static_cast<std::uint32_t>(*s.shard_dim)) : ~0ull);
    h.add(s.owner ? static_cast<std::uint64_t>(static_cast<std::uint32_t>(*s.owner)) : ~0ull);
  }
  return call_description()
      .add("op", who)
      .add("specs", str(specs.size(), " tensors of fingerprint ", h.value()))
      .add("max_batch_bytes", options.max_batch_bytes);
}

// One shard_scatter call: prepare() plans, checks and allocates, run() moves the batches, take() hands the
// results over. Copies are listed and made by `space` (on the host at once; on a device one table per
// loaded tensor packed, one per batch received; on both one per batch for this rank's own shards of the
// tensors sent in place, after the batch is posted), staging is memory of that space. A loaded tensor sent in
// place is held until its batch's transfers complete, any other dropped once sliced.
template <class Tensor, class Comm, class Load, class Space>
class shard_run {
 public:
  using loaded = std::remove_cvref_t<std::invoke_result_t<Load&, std::size_t>>;
  static constexpr const char* who = "redist::shard_scatter";

  shard_run(const Comm& comm, std::span<const shard_spec> specs, Load& load, const shard_options& options,
            const Space& space)
      : comm_(comm),
        specs_(specs),
        load_(load),
        options_(options),
        space_(space),
        me_(comm.rank()),
        n_(static_cast<std::size_t>(comm.size())),
        mine_(static_cast<std::size_t>(comm.rank())),
        owned_(space) {}

  // Everything that can fail before data moves, agreed with the specs and the budget (agree).
  void prepare() {
    problem_ = space_problem(who, comm_, space_);
    if (problem_.empty()) {
      problem_ = problem_of([&] {
        allocating(who, me_, "its results and staging", [&] {
          plan_ = plan_shards(who, specs_, comm_.size(), options_, sizes_);
          in_place_ = shards_in_place(specs_, sizes_, n_);
          allocate();
        });
      });
    }
    agree(comm_, who, problem_, describe_shard_call(who, specs_, options_));
  }

  // Packs batch b (loading its tensors) and starts it, then completes and unpacks batch b - 1. A load
  // failure is agreed at the end: every rank saw every rank's success flag in the last batch (or is alone),
  // so all of them call agree or none does.
  void run() {
    if (debug_prints(me_)) [[unlikely]]
      debug_.emplace(n_);
    const std::size_t batches = plan_.batches();
    for (std::size_t b = 0; b < batches; ++b) {
      start(b);
      if (b > 0) finish(b - 1);
    }
    if (batches > 0) finish(batches - 1);
    if (debug_) report();
    if (peer_failed_ || !problem_.empty()) agree(comm_, who, problem_);
  }

  std::vector<named_tensor<Tensor>> take() {
    for (std::size_t i = 0; i < specs_.size(); ++i) out_.push_back({specs_[i].name, std::move(*results_[i])});
    return std::move(out_);
  }

 private:
  bool whole(std::size_t i) const noexcept { return !specs_[i].shard_dim || n_ == 1; }
  bool moved_in(std::size_t i) const noexcept {  // a result taken over from load's tensor, not allocated
    return std::is_same_v<loaded, Tensor> && plan_.owners[i] == me_ && whole(i);
  }
  std::byte* result_data(std::size_t i) {
    return static_cast<std::byte*>(tensor_traits<Tensor>::data(*results_[i]));
  }
  bool last(std::size_t b) const noexcept { return b + 1 == plan_.batches(); }
  std::size_t shard_offset(std::size_t i) const noexcept { return whole(i) ? 0 : sizes_[i].per_rank; }

  // Staging for the two batches in flight, from the caller's workspace or allocated, and every result but
  // those taken over from load.
  void allocate() {
    out_.reserve(specs_.size());
    const std::array<std::size_t, 4> need = staging_bytes(plan_, sizes_, in_place_, mine_, n_);
    const std::size_t total = need[0] + need[1] + need[2] + need[3];
    std::span<std::byte> staging = options_.workspace;
    if (staging.empty()) {
      staging = owned_.resize(total);
    } else if (staging.size() < total) {
      fail(who, ": the workspace of rank ", me_, " holds ", staging.size(), " bytes, less than the ", total,
           " it needs (shard_workspace_bytes)");
    }
    for (std::size_t slot = 0, at = 0; slot < 2; ++slot) {
      send_[slot] = staging.subspan(at, need[slot]);
      recv_[slot] = staging.subspan(at + need[slot], need[2 + slot]);
      at += need[slot] + need[2 + slot];
    }
    results_.resize(specs_.size());
    sources_.resize(specs_.size());
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      if (!moved_in(i)) allocate_result(i);
    }
  }
  void allocate_result(std::size_t i) {
    std::vector<std::int64_t> shape = specs_[i].shape;
    if (!whole(i)) shape[static_cast<std::size_t>(*specs_[i].shard_dim)] /= static_cast<std::int64_t>(n_);
    results_[i].emplace(tensor_traits<Tensor>::allocate(specs_[i].dtype, shape));
  }

  void start(std::size_t b) {
    const std::size_t slot = b % 2;
    shard_layout& l = layouts_[slot];
    lay_out(plan_, sizes_, in_place_, b, mine_, n_, l);
    std::byte* send = send_[slot].data();
    std::size_t at = 0;  // within each block
    for (std::size_t i = plan_.batch_starts[b]; i < plan_.batch_starts[b + 1]; ++i) {
      if (plan_.owners[i] != me_) continue;
      for (std::size_t p = 0; p < n_; ++p) {
        if (p != mine_) to_[p] = send + l.send_displs[p] + at;
      }
      if (problem_.empty()) load_and_slice(i, slot);  // after a failure: filler, the result is thrown away
      if (!problem_.empty() && in_place_[i] != 0) send_filler(i);
      at += in_place_[i] != 0 ? 0 : sizes_[i].per_rank;
    }
    if (last(b)) {
      const std::byte flag = problem_.empty() ? std::byte{0} : std::byte{1};
      for (std::size_t p = 0; p < n_; ++p) {
        if (p != mine_) space_.fill(send + l.send_displs[p] + l.block, 1, flag);
      }
    }
    if (l.moves) post(b);
    own_.run(space_);  // this rank's shards of the tensors sent in place, while the batch moves
  }

  // A tensor sent in place whose load failed, or came after one that did: its sends read this rank's own
  // result, allocated now for one that was to be moved in. noexcept: should that fail, no message of the size
  // the other ranks expect could be sent, and the rank ends rather than leave them waiting forever.
  void send_filler(std::size_t i) noexcept {
    if (!results_[i]) allocate_result(i);
    sources_[i] = {result_data(i), 0};
  }

  // Starts the exchange of batch b, one group of point-to-point transfers: to each other rank its shards of
  // this rank's tensors in spec order, those sent in place read from the tensors, the others from the staging
  // block; from each one its pieces, large ones received in their results, small ones in staging (in a row,
  // merged). With gathers_sends one message each way per rank, else the pieces sent in place apart.
  void post(std::size_t b) {
    const std::size_t slot = b % 2;
    const shard_layout& l = layouts_[slot];
    auto g = comm_.start_group();
    for (std::size_t k = 1; k < n_; ++k) {
      const std::size_t to = (mine_ + k) % n_, from = (mine_ + n_ - k) % n_;
      const int peer = static_cast<int>(to);
      const std::byte* const block = send_[slot].data() + l.send_displs[to];
      std::size_t done = 0, at = 0, sent = 0;  // of the block: sent, listed; bytes in all
      auto emit = [&](const_segment piece) {   // the message's next piece, or a message of its own
        sent += piece.bytes;
        if constexpr (gathers_sends<Comm>)
          append_piece(send_pieces_, piece);
        else
          g.send({piece.data, piece.bytes}, peer);
      };
      send_pieces_.clear();
      for (std::size_t i = plan_.batch_starts[b]; i < plan_.batch_starts[b + 1]; ++i) {
        if (plan_.owners[i] != me_) continue;
        if (in_place_[i] == 0) {
          at += sizes_[i].per_rank;
          continue;
        }
        emit({block + done, at - done});  // the packed ones before it
        done = at;
        emit({sources_[i].first + to * sources_[i].second, sizes_[i].per_rank});
      }
      emit({block + done, l.send_counts[to] - done});
      if constexpr (gathers_sends<Comm>) g.send_pieces(send_pieces_, peer);
      receive(g, slot, from);
      if (debug_) debug_->to[to] += sent;
    }
    if (debug_) ++debug_->exchanged;
    in_flight_[slot].emplace(std::move(g).finish());
  }

  // Posts in g the receives of what rank `from` sends this rank in the batch in slot, framed as it sends.
  template <class Group>
  void receive(Group& g, std::size_t slot, std::size_t from) {
    const int peer = static_cast<int>(from);
    recv_pieces_.clear();
    for (const shard_piece& piece : layouts_[slot].from[from]) {
      std::byte* const at =
          piece.staged == shard_piece::direct ? result_data(piece.spec) : recv_[slot].data() + piece.staged;
      if (debug_) debug_->from[from] += piece.bytes;
      if (gathers_sends<Comm> || !piece.in_place) {
        append_piece(recv_pieces_, segment{at, piece.bytes});
        continue;
      }
      g.recv_pieces(recv_pieces_, peer);
      recv_pieces_.clear();
      g.recv({at, piece.bytes}, peer);
    }
    g.recv_pieces(recv_pieces_, peer);
  }

  // Loads tensor i, checks it and slices it, then holds it until the transfers of batch `slot` complete when
  // it is sent in place, else drops it; what load throws becomes this rank's problem.
  void load_and_slice(std::size_t i, std::size_t slot) {
    const shard_spec& s = specs_[i];
    try {
      loaded& full = held_[slot].emplace_back(load_, i).tensor;
      problem_ = check_loaded(full, s, i);
      if (problem_.empty() && slice(i, full)) return;
      held_[slot].pop_back();
    } catch (const std::exception& e) {
      problem_ = std::string(who) + ": load(" + std::to_string(i) + ") for tensor '" + s.name +
                 "' threw: " + e.what();
    } catch (...) {
      problem_ = std::string(who) + ": load(" + std::to_string(i) + ") for tensor '" + s.name +
                 "' threw something that is not a std::exception";
    }
    if (!problem_.empty()) problem_ += " (on rank " + std::to_string(me_) + ")";
  }

  // Copies tensor i's shard for every other rank p to to_[p] and its own into its result (a replicated
  // tensor whole to each, and moved into the result when it is a Tensor), all of them made before full
  // goes: on a device one table, which the stream orders before full's memory is freed. A tensor sent in
  // place is not packed, its own shard copied after the batch is posted (own_); true when full must be held.
  bool slice(std::size_t i, loaded& full) {
    const auto* from = static_cast<const std::byte*>(tensor_traits<loaded>::data(std::as_const(full)));
    if (in_place_[i] != 0) {
      if (!moved_in(i)) {
        own_.copy(result_data(i), from + mine_ * shard_offset(i), sizes_[i].per_rank);
        sources_[i] = {from, shard_offset(i)};
        return true;
      }
      if constexpr (std::is_same_v<loaded, Tensor>) results_[i].emplace(std::move(full));
      sources_[i] = {result_data(i), 0};  // the result is the tensor: nothing to hold
      return false;
    }
    if (!whole(i)) {
      to_[mine_] = result_data(i);
      slice_shards(from, specs_[i], n_, to_, copies_);
    } else {
      for (std::size_t p = 0; p < n_; ++p) {
        if (p != mine_) copies_.copy(to_[p], from, sizes_[i].bytes);
      }
      if (!moved_in(i)) copies_.copy(result_data(i), from, sizes_[i].bytes);
    }
    copies_.run(space_);
    if constexpr (std::is_same_v<loaded, Tensor>) {
      if (moved_in(i)) results_[i].emplace(std::move(full));
    }
    return false;
  }

  void finish(std::size_t b) {
    const std::size_t slot = b % 2;
    const shard_layout& l = layouts_[slot];
    if (l.moves) {
      in_flight_[slot]->wait();
      in_flight_[slot].reset();
    }
    held_[slot].clear();  // the tensors sent in place: their sends are complete
    if (!l.moves) return;
    for (const auto& pieces : l.from)
      for (const shard_piece& piece : pieces)
        if (piece.staged != shard_piece::direct && piece.spec != shard_piece::flag)
          copies_.copy(result_data(piece.spec), recv_[slot].data() + piece.staged, piece.bytes);
    copies_.run(space_);
    if (last(b) && n_ > 1) {
      space_.to_host(flags_.data(), recv_[slot].data() + l.flags, n_ - 1);
      for (const std::byte f : flags_) peer_failed_ = peer_failed_ || f != std::byte{0};
    }
  }

  // REDIST_DEBUG's line: what moved, from run()'s start.
  void report() const {
    std::uint64_t sent = 0, received = 0;
    std::string peers;
    for (std::size_t p = 0; p < n_; ++p) {
      sent += debug_->to[p];
      received += debug_->from[p];
      if (p != mine_)
        peers += str(peers.empty() ? "; " : ", ", "peer ", p, " sent ", debug_->to[p], " B, received ",
                     debug_->from[p], " B");
    }
    std::size_t owned = 0;
    for (const int o : plan_.owners) owned += o == me_ ? 1 : 0;
    debug_print(me_, comm_.size(), who, ": ", specs_.size(), " tensors (", owned, " loaded here) in ",
                plan_.batches(), " batches, ", debug_->exchanged, " exchanged, max_batch_bytes ",
                options_.max_batch_bytes, ": ", debug_->timer.figures(sent, received),
                problem_.empty() ? "" : " (a load failed here)", debug_traces() ? peers : std::string());
  }
  struct debug_figures {
    explicit debug_figures(std::size_t n) : to(n), from(n) {}
    debug_op_timer timer;
    std::vector<std::uint64_t> to, from;  // bytes per peer
    std::size_t exchanged = 0;            // batches
  };

  struct held {  // a loaded tensor sent in place, made where it is held (load may return an immovable type)
    held(Load& load, std::size_t i) : tensor(load(i)) {}
    loaded tensor;
  };

  const Comm& comm_;
  std::span<const shard_spec> specs_;
  Load& load_;
  shard_options options_;
  const Space& space_;
  int me_;
  std::size_t n_, mine_;
  shard_plan plan_;
  std::vector<shard_sizes> sizes_;
  std::vector<std::optional<Tensor>> results_;
  std::vector<std::uint8_t> in_place_;                             // per spec: shards_in_place
  std::vector<std::pair<const std::byte*, std::size_t>> sources_;  // sent in place: bytes, rank to rank
  std::vector<named_tensor<Tensor>> out_;
  space_buffer<Space> owned_;               // staging when the caller gives no workspace
  std::span<std::byte> send_[2], recv_[2];  // staging, per batch parity
  shard_layout layouts_[2];
  phase_copies<Space> copies_;
  copy_list own_;  // this rank's shards of the batch's tensors sent in place, one table after the posting
  std::vector<std::byte*> to_ = std::vector<std::byte*>(n_);  // where the shards for each rank go
  std::vector<segment> recv_pieces_;                          // one source's, while its receive is posted
  std::vector<const_segment> send_pieces_;  // to one rank, while its send is posted (gathers_sends)
  std::vector<std::byte> flags_ = std::vector<std::byte>(n_ - 1);  // the other ranks' success flags
  std::string problem_;
  bool peer_failed_ = false;
  std::optional<debug_figures> debug_;                  // REDIST_DEBUG, when this rank prints
  std::deque<held> held_[2];                            // per batch parity, until its transfers complete
  std::optional<typename Comm::request> in_flight_[2];  // declared last, destroyed first: completes before
                                                        // staging goes
};

}  // namespace detail

}  // namespace redist
