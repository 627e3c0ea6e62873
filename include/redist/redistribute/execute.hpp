// redistribute()'s execution: the policy each step type runs with, the agreement before any byte moves, the
// steps in order, and the one-call form's result.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/hash.hpp"
#include "redist/detail/text.hpp"
#include "redist/options.hpp"
#include "redist/plan/steps.hpp"
#include "redist/redistribute/check.hpp"
#include "redist/steps/all_to_all.hpp"
#include "redist/steps/broadcast.hpp"
#include "redist/steps/context.hpp"
#include "redist/steps/gather.hpp"
#include "redist/steps/scatter.hpp"

namespace redist::detail {

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

// A fingerprint of everything in a plan that its execution reads, to check that every rank runs the same one:
// each step's kind and keys, and its transfers (an id list hashed where it first appears).
inline std::uint64_t plan_hash(const plan& p) {
  fingerprint h;
  h.add(static_cast<std::uint64_t>(p.ranks));
  for (const auto& stage : p.stages) {
    h.add(stage.size());
    for (const auto& s : stage) {
      h.add(s.index()).add_all(keys_of(s));
      std::vector<char> seen;
      for_each_transfer(
          s,
          [&](const step_transfer& t) {
            h.add(static_cast<std::uint64_t>(t.src)).add(static_cast<std::uint64_t>(t.dst));
            h.add(t.first_key).add(t.key_count).add(t.list);
            if (t.list >= seen.size()) seen.resize(t.list + 1, 0);
            if (!seen[t.list]) h.add_all(*t.ids);
            seen[t.list] = 1;
          },
          [&](const std::string& defect) { h.add(defect); });
    }
  }
  return h.value();
}

inline const char* pattern_name(plan_pattern p) noexcept {
  switch (p) {
    case plan_pattern::one_hop:
      return "one_hop";
    case plan_pattern::gather_scatter:
      return "gather_scatter";
    case plan_pattern::broadcast:
      return "broadcast";
  }
  return "unknown";
}

// What every rank's call to redistribute() must have in common, in both forms.
template <class Staging>
call_description describe_redistribute(const redistribute_options& opts) {
  return call_description()
      .add("op", "redist::redistribute")
      .add("staging", Staging::label)
      .add("max_staging_bytes", opts.max_staging_bytes)
      .add("allow_lossy", opts.allow_lossy);
}

// The agreement of redistribute() (this rank's problem found before, `earlier`, else its share of the checks,
// agreed with `call`), then the steps. With `out`, arriving pairs it wants land there.
template <class Staging, class... Policies, class Comm, class Tensor>
void execute(const Comm& comm, sample_store<Tensor>& store, const plan& p, const catalog& cat,
             const redistribute_options& opts, sequence_batch<Tensor>* out, const call_description& call,
             const std::string& earlier = {}) {
  std::string problem = earlier;
  if (problem.empty())
    problem =
        problem_of([&] { check_before_transfer<Staging>(comm.rank(), comm.size(), store, p, cat, opts); });
  agree(comm, "redist::redistribute", problem, call);

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

// Whether `b` already has the one-call result's layout: `ids` in this order, `keys` in this order with their
// dtypes and trailing shapes, every sample's seqlens as the catalog has them, and tensors of those shapes.
template <class Tensor>
bool has_layout(const sequence_batch<Tensor>& b, const catalog& cat, const std::vector<sample_id>& ids,
                const std::vector<std::string>& keys) {
  if (!b.has_data() || !std::equal(b.ids().begin(), b.ids().end(), ids.begin(), ids.end()) ||
      b.fields().size() != keys.size())
    return false;
  for (std::size_t f = 0; f < keys.size(); ++f) {
    const auto& field = b.fields()[f];
    const std::size_t k = *cat.find_key(keys[f]);
    const auto& schema = cat.keys()[k];
    if (field.name != keys[f] || field.dtype != schema.dtype || field.trailing_shape != schema.trailing_shape)
      return false;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto want = cat.seqlens(ids[i], k);
      const auto have = field.seqlens[i];
      if (!std::equal(have.begin(), have.end(), want.begin(), want.end())) return false;
    }
  }
  return true;  // the batch is valid, so its tensors' shapes follow from the seqlens
}

// The one-call form's result: `ids` with `keys`, seqlens from the catalog, each key's tensor allocated once,
// or taken from `reuse` (and `reused` set) when it has that layout already. Per-sample metadata: a name comes
// along when every rank that holds samples has it (a rank holding none has no say), each value from the
// lowest rank holding the id.
template <class Tensor>
sequence_batch<Tensor> make_output(const catalog& cat, const std::vector<sample_id>& ids,
                                   const std::vector<std::string>& keys,
                                   const std::vector<sequence_batch<host_tensor>>& metas,
                                   sequence_batch<Tensor>* reuse, bool& reused) {
  reused = reuse != nullptr && has_layout(*reuse, cat, ids, keys);
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
    fields.push_back(
        {name, schema.dtype, schema.trailing_shape, std::move(lens),
         reused ? std::move(reuse->data(name)) : tensor_traits<Tensor>::allocate(schema.dtype, shape)});
  }
  metadata_map metadata;
  const auto holder = std::find_if(metas.begin(), metas.end(), [](const auto& m) { return m.size() != 0; });
  if (holder != metas.end()) {
    for (const auto& [name, values] : holder->metadata()) {
      const bool everywhere = std::all_of(metas.begin(), metas.end(), [&n = name](const auto& m) {
        return m.size() == 0 || m.metadata().count(n) != 0;
      });
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

// Gives a reused output its tensors back, with its old metadata, after a failed call.
template <class Tensor>
void give_back(sequence_batch<Tensor>& result, sequence_batch<Tensor>& out, metadata_map old_metadata) {
  std::vector<typename sequence_batch<Tensor>::field> fields;
  for (const auto& f : result.fields())
    fields.push_back({f.name, f.dtype, f.trailing_shape, f.seqlens, std::move(result.data(f.name))});
  out = sequence_batch<Tensor>(std::vector<sample_id>(result.ids().begin(), result.ids().end()),
                               std::move(fields), std::move(old_metadata));
}

}  // namespace redist::detail
