// redist::redistribute: executes a plan against this rank's store, one step policy per step type, after every
// rank has agreed the inputs are sound; and the one-call form that exchanges metadata, plans and executes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/comm/communicator.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/error.hpp"
#include "redist/core/metadata_codec.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/hash.hpp"
#include "redist/options.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/broadcast.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/staging/byte_staging.hpp"
#include "redist/staging/float32_staging.hpp"
#include "redist/steps/all_to_all.hpp"
#include "redist/steps/broadcast.hpp"
#include "redist/steps/context.hpp"
#include "redist/steps/gather.hpp"
#include "redist/steps/scatter.hpp"

namespace redist {

namespace detail {

template <class Step, class Staging>
struct default_policy;
template <class Staging>
struct default_policy<broadcast_step, Staging> : broadcast_policy<Staging> {};
template <class Staging>
struct default_policy<gather_step, Staging> : gather_policy<Staging> {};
template <class Staging>
struct default_policy<scatter_step, Staging> : scatter_policy<Staging> {};
template <class Staging>
struct default_policy<all_to_all_step, Staging> : all_to_all_policy<Staging> {};

// The first of Policies whose step_type is Step, else the default policy for Step.
template <class Step, class Staging, class... Policies>
struct pick_policy {
  using type = default_policy<Step, Staging>;
};
template <class Step, class Staging, class P, class... Rest>
struct pick_policy<Step, Staging, P, Rest...> {
  using type = std::conditional_t<std::is_same_v<typename P::step_type, Step>, P,
                                  typename pick_policy<Step, Staging, Rest...>::type>;
};

// A fingerprint of everything in a plan, to check that every rank runs the same one.
inline std::uint64_t plan_hash(const plan& p) {
  fingerprint h;
  h.add(static_cast<std::uint64_t>(p.ranks));
  for (const auto& stage : p.stages) {
    h.add(stage.size());
    for (const auto& s : stage) {
      h.add(s.index());
      std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            h.add_all(x.keys);
            if constexpr (std::is_same_v<T, all_to_all_step>) {
              for (const auto& q : x.payloads)
                h.add_all(q.ids).add(q.key).add(static_cast<std::uint64_t>(q.src));
              for (const auto& r : x.routes)
                h.add(static_cast<std::uint64_t>(r.src))
                    .add(static_cast<std::uint64_t>(r.dst))
                    .add(r.payload);
            } else {
              h.add(static_cast<std::uint64_t>(x.root));
              if constexpr (std::is_same_v<T, gather_step>)
                h.add_all(x.srcs);
              else
                h.add_all(x.dsts);
              if constexpr (std::is_same_v<T, broadcast_step>)
                h.add_all(x.ids);
              else
                for (const auto& l : x.ids) h.add_all(l);
            }
          },
          s);
    }
  }
  return h.value();
}

// A rank's part of the one-call form's allgather: its batch's metadata, then the ids it wants.
template <class Tensor>
std::vector<std::byte> encode_request(const sequence_batch<Tensor>& local,
                                      const std::vector<sample_id>& wanted) {
  const auto meta = encode_metadata(local);
  std::vector<std::byte> blob(8 + meta.size() + 8 * wanted.size());
  const std::uint64_t length = meta.size();
  std::memcpy(blob.data(), &length, 8);
  std::memcpy(blob.data() + 8, meta.data(), meta.size());
  if (!wanted.empty()) std::memcpy(blob.data() + 8 + meta.size(), wanted.data(), 8 * wanted.size());
  return blob;
}

inline std::pair<sequence_batch<host_tensor>, id_list> decode_request(std::span<const std::byte> blob) {
  std::uint64_t length = 0;
  if (blob.size() >= 8) std::memcpy(&length, blob.data(), 8);
  if (blob.size() < 8 || length > blob.size() - 8 || (blob.size() - 8 - length) % 8 != 0)
    fail("redist::redistribute: a rank's request of ", blob.size(), " bytes is malformed");
  auto meta = decode_metadata(blob.subspan(8, length));
  id_list wanted((blob.size() - 8 - length) / 8);
  if (!wanted.empty()) std::memcpy(wanted.data(), blob.data() + 8 + length, 8 * wanted.size());
  return {std::move(meta), std::move(wanted)};
}

// What this rank sends and receives in a step, as (peer, ids, key names) triples.
struct step_io {
  std::vector<std::pair<int, const id_list*>> sends, receives;
  const std::vector<std::string>* keys = nullptr;
  std::vector<std::pair<const id_list*, std::uint32_t>> payload_sends,
      payload_receives;  // all-to-all: key index
};

inline step_io io_of(const step& s, int me) {
  step_io io;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        io.keys = &x.keys;
        if constexpr (std::is_same_v<T, broadcast_step>) {
          for (int d : x.dsts) {
            if (x.root == me) io.sends.emplace_back(d, &x.ids);
            if (d == me) io.receives.emplace_back(x.root, &x.ids);
          }
        } else if constexpr (std::is_same_v<T, gather_step>) {
          for (std::size_t i = 0; i < x.srcs.size() && i < x.ids.size(); ++i) {
            if (x.srcs[i] == x.root) continue;
            if (x.srcs[i] == me) io.sends.emplace_back(x.root, &x.ids[i]);
            if (x.root == me) io.receives.emplace_back(x.srcs[i], &x.ids[i]);
          }
        } else if constexpr (std::is_same_v<T, scatter_step>) {
          for (std::size_t i = 0; i < x.dsts.size() && i < x.ids.size(); ++i) {
            if (x.dsts[i] == x.root) continue;
            if (x.root == me) io.sends.emplace_back(x.dsts[i], &x.ids[i]);
            if (x.dsts[i] == me) io.receives.emplace_back(x.root, &x.ids[i]);
          }
        } else {
          for (const auto& r : x.routes) {
            if (r.payload >= x.payloads.size())
              fail("redist::redistribute: a route names payload ", r.payload, " of ", x.payloads.size());
            const auto& q = x.payloads[r.payload];
            if (q.key >= x.keys.size())
              fail("redist::redistribute: a payload names key ", q.key, " of ", x.keys.size());
            if (r.src == me) io.payload_sends.emplace_back(&q.ids, q.key);
            if (r.dst == me) io.payload_receives.emplace_back(&q.ids, q.key);
          }
        }
      },
      s);
  return io;
}

// This rank's share of the checks made before any byte moves: the plan fits the communicator, every key and
// id it names is in the catalog, this rank holds what it sends, nothing reaches it twice in one step, and
// with float32 staging every value it sends survives the cast.
template <class Staging, class Tensor>
void check_before_transfer(int me, int size, const sample_store<Tensor>& store, const plan& p,
                           const catalog& cat, const redistribute_options& opts) {
  if (p.ranks != size)
    fail("redist::redistribute: the plan is for ", p.ranks, " ranks, the communicator has ", size);
  // (id, key) pairs this rank receives in earlier stages: it may relay them later (gather, then scatter).
  std::vector<std::pair<sample_id, std::size_t>> relayed;
  for (std::size_t s = 0; s < p.stages.size(); ++s) {
    std::vector<std::pair<sample_id, std::size_t>> arriving;
    for (std::size_t n = 0; n < p.stages[s].size(); ++n) {
      const auto io = io_of(p.stages[s][n], me);
      std::vector<std::size_t> keys;
      for (const auto& k : *io.keys) {
        const auto kp = cat.find_key(k);
        if (!kp)
          fail("redist::redistribute: stage ", s, " step ", n, " names key '", k, "', which no rank holds");
        keys.push_back(*kp);
      }
      auto check_send = [&](sample_id id, std::size_t k) {
        const auto& key = cat.keys()[k];
        if (!cat.has(id, k))
          fail("redist::redistribute: id ", id, ", key '", key.name, "' is in the plan but no rank holds it");
        const auto loc = store.find(id, key.name);
        if (!loc && std::binary_search(relayed.begin(), relayed.end(), std::pair{id, k})) return;
        if (!loc)
          fail("redist::redistribute: rank ", me, " must send id ", id, ", key '", key.name,
               "', which it does not hold");
        if constexpr (std::is_same_v<Staging, float32_staging>) {
          if (opts.allow_lossy) return;
          const auto& t = loc->batch->data(key.name);
          const auto range = loc->batch->sample_bytes(key.name, loc->position);
          const auto* bytes = static_cast<const std::byte*>(tensor_traits<Tensor>::data(t)) + range.offset;
          const std::size_t count = range.size / size_of(key.dtype);
          const std::size_t bad = first_lossy_f32(key.dtype, bytes, count);
          if (bad != count)
            fail("redist::redistribute: float32 staging would change element ", bad, " of id ", id, ", key '",
                 key.name, "' (", name(key.dtype), "); use byte_staging or set allow_lossy");
        }
      };
      const auto step_begin = static_cast<std::ptrdiff_t>(arriving.size());
      auto check_receive = [&](sample_id id, std::size_t k) {
        if (!cat.has(id, k))
          fail("redist::redistribute: id ", id, ", key '", cat.keys()[k].name,
               "' is in the plan but no rank holds it");
        arriving.emplace_back(id, k);
      };
      for (const auto& [peer, ids] : io.sends)
        for (sample_id id : *ids)
          for (auto k : keys) check_send(id, k);
      for (const auto& [ids, k] : io.payload_sends)
        for (sample_id id : *ids) check_send(id, keys[k]);
      for (const auto& [peer, ids] : io.receives)
        for (sample_id id : *ids)
          for (auto k : keys) check_receive(id, k);
      for (const auto& [ids, k] : io.payload_receives)
        for (sample_id id : *ids) check_receive(id, keys[k]);
      std::sort(arriving.begin() + step_begin, arriving.end());
      const auto twice = std::adjacent_find(arriving.begin() + step_begin, arriving.end());
      if (twice != arriving.end())
        fail("redist::redistribute: stage ", s, " step ", n, " delivers id ", twice->first, ", key '",
             cat.keys()[twice->second].name, "' to rank ", me, " twice");
    }
    relayed.insert(relayed.end(), arriving.begin(), arriving.end());
    std::sort(relayed.begin(), relayed.end());
  }
}

}  // namespace detail

namespace detail {

// The checks and agreement of redistribute(), then the steps. With `out`, arriving pairs it wants land there.
// `earlier`: this rank's problem found before (empty when none), agreed with the checks'.
template <class Staging, class... Policies, class Comm, class Tensor>
void execute(const Comm& comm, sample_store<Tensor>& store, const plan& p, const catalog& cat,
             const redistribute_options& opts, sequence_batch<Tensor>* out, bool compare_plans,
             const std::string& earlier = {}) {
  std::string problem =
      problem_of([&] { check_before_transfer<Staging>(comm.rank(), comm.size(), store, p, cat, opts); });
  if (problem.empty()) problem = earlier;
  if (compare_plans) {
    const auto h = plan_hash(p);
    if (const auto [lo, hi] = comm.allreduce_min_max(h); lo != hi)
      problem = "redist::redistribute: the ranks were given different plans";
  }
  agree(comm, problem);

  step_context<Comm, Tensor, Staging> ctx(comm, store, cat, opts);
  if (out) ctx.deliver_into(*out);
  for (const auto& stage : p.stages)
    for (const auto& s : stage)
      std::visit(
          [&](const auto& x) {
            using policy = typename pick_policy<std::decay_t<decltype(x)>, Staging, Policies...>::type;
            policy::run(ctx, x);
          },
          s);
  if (out) ctx.fill_output();
}

// The one-call form's result, allocated once: `ids` with `keys`, seqlens from the catalog. Per-sample
// metadata names that every rank's batch has come along, each value from the lowest rank holding the id.
template <class Tensor>
sequence_batch<Tensor> make_output(const catalog& cat, const std::vector<sample_id>& ids,
                                   const std::vector<std::string>& keys,
                                   const std::vector<sequence_batch<host_tensor>>& metas) {
  std::vector<typename sequence_batch<Tensor>::field> fields;
  for (const auto& name : keys) {
    const std::size_t k = *cat.find_key(name);
    const auto& schema = cat.keys()[k];
    seqlen_table lens;
    std::int64_t tokens = 0;
    for (sample_id id : ids) {
      lens.push_back(cat.seqlens(id, k));
      tokens += cat.tokens(id, k);
    }
    std::vector<std::int64_t> shape{tokens};
    shape.insert(shape.end(), schema.trailing_shape.begin(), schema.trailing_shape.end());
    fields.push_back({name, schema.dtype, schema.trailing_shape, std::move(lens),
                      tensor_traits<Tensor>::allocate(schema.dtype, shape)});
  }
  metadata_map metadata;
  if (!metas.empty()) {
    for (const auto& [name, values] : metas.front().metadata()) {
      const bool everywhere = std::all_of(metas.begin(), metas.end(),
                                          [&n = name](const auto& m) { return m.metadata().count(n) != 0; });
      if (!everywhere) continue;
      auto& column = metadata[name];
      for (sample_id id : ids)
        for (const auto& m : metas)
          if (const auto pos = m.find(id)) {
            column.push_back(m.metadata().find(name)->second[*pos]);
            break;
          }
    }
  }
  return sequence_batch<Tensor>(ids, std::move(fields), std::move(metadata));
}

}  // namespace detail

// Executes `p` (the same plan on every rank of comm) against this rank's store. `cat` describes every (id,
// key) the plan moves and must be the same on every rank. Received samples are added to the store; nothing
// else changes. Before any byte moves, every rank checks its share and the ranks agree (two allreduces: the
// outcome, and the minimum and maximum of a plan fingerprint): any rank's problem becomes the same
// redist::error on every rank, with every store unchanged. Policies replace the default policy of their
// step_type. A rank that cannot allocate (std::bad_alloc) once data moves, a received tensor or staging, is
// not recovered: its peers would wait for it, as MPI would; the staging budget bounds what it allocates. (The
// one-call form allocates its result before the agreement: a failure there is agreed like any problem.)
template <class Staging = byte_staging, class... Policies, class Comm, class Tensor>
void redistribute(const Comm& comm, sample_store<Tensor>& store, const plan& p, const catalog& cat,
                  const redistribute_options& opts = {}) {
  detail::execute<Staging, Policies...>(comm, store, p, cat, opts,
                                        static_cast<sequence_batch<Tensor>*>(nullptr), true);
}

// The one-call form. Every rank passes its local batch and the ids it wants; every rank gets back a batch of
// exactly those ids, in that order, with opts.keys (or every key, ascending by name), keys packed in that
// order. Costs, before any sample moves: one allgather of every rank's metadata (a compact encoding, not the
// data; two MPI calls, sizes then bytes) and one allreduce to agree on the checks of the plan-based form.
template <class Staging = byte_staging, class... Policies, class Comm, class Tensor>
sequence_batch<Tensor> redistribute(const Comm& comm, const sequence_batch<Tensor>& local,
                                    const std::vector<sample_id>& wanted,
                                    const redistribute_options& opts = {}) {
  // The allgather carries each rank's request, or its problem: a status byte first.
  std::vector<std::byte> blob;
  const std::string problem = detail::problem_of([&] {
    local.validate();
    blob = detail::encode_request(local, wanted);
  });
  if (!problem.empty())
    blob.assign(reinterpret_cast<const std::byte*>(problem.data()),
                reinterpret_cast<const std::byte*>(problem.data() + problem.size()));
  blob.insert(blob.begin(), std::byte{problem.empty() ? std::uint8_t{0} : std::uint8_t{1}});
  std::vector<std::size_t> counts;
  const auto all = comm.allgatherv(blob, &counts);
  for (std::size_t r = 0, at = 0; r < counts.size(); at += counts[r], ++r)
    if (counts[r] > 0 && all[at] != std::byte{0})
      throw error(std::string(reinterpret_cast<const char*>(all.data() + at + 1), counts[r] - 1));

  // Every rank decodes the same bytes and plans from them: any error here is the same on every rank, and
  // so is the plan, with no further communication.
  catalog cat;
  std::vector<sequence_batch<host_tensor>> metas;
  std::vector<id_list> wants;
  std::vector<std::string> keys = opts.keys;
  for (std::size_t r = 0, at = 0; r < counts.size(); at += counts[r], ++r) {
    auto [meta, ids] = detail::decode_request(std::span(all).subspan(at + 1, counts[r] - 1));
    cat.add(meta, static_cast<int>(r));
    metas.push_back(std::move(meta));
    wants.push_back(std::move(ids));
  }
  if (keys.empty())
    for (const auto& k : cat.keys()) keys.push_back(k.name);
  const auto tracker = storage_tracker::from_batches(metas);
  const plan_options po{.ranks_per_node = opts.ranks_per_node};
  plan p;
  switch (opts.pattern) {
    case plan_pattern::one_hop:
      p = plan_all_to_all(tracker, wants, keys, po);
      break;
    case plan_pattern::gather_scatter:
      p = plan_gather_scatter(tracker, wants, keys, po);
      break;
    case plan_pattern::broadcast:
      p = plan_broadcast(tracker, wants, keys, po);
      break;
  }

  sample_store<Tensor> store;
  store.borrow(local);  // no copy of this rank's samples
  // Received samples land in their final places; what this rank held is copied in once at the end. A rank
  // that cannot allocate them says so in the agreement instead of leaving the others waiting in it.
  std::optional<sequence_batch<Tensor>> out;
  const std::string problem_here = detail::problem_of([&] {
    detail::allocating("redist::redistribute", comm.rank(), "its result",
                       [&] { out.emplace(detail::make_output<Tensor>(cat, wanted, keys, metas)); });
  });
  detail::execute<Staging, Policies...>(comm, store, p, cat, opts, out ? &*out : nullptr, false,
                                        problem_here);
  return std::move(*out);
}

}  // namespace redist
