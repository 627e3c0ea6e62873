// redistribute()'s execution: the policy each step type runs with, the agreement before any byte moves, the
// steps in order, and the one-call form's result.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/debug.hpp"
#include "redist/detail/hash.hpp"
#include "redist/detail/text.hpp"
#include "redist/options.hpp"
#include "redist/plan/steps.hpp"
#include "redist/redistribute/check.hpp"
#include "redist/redistribute/checksums.hpp"
#include "redist/redistribute/debug_report.hpp"
#include "redist/redistribute/output.hpp"
#include "redist/staging/space_call.hpp"
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

// A fingerprint of what a plan's execution reads of the catalog, which sizes every message: each step's keys'
// dtypes and trailing shapes, and the seqlens of every (id, key) it moves (an id list where it first
// appears), in the plan's order. Ranks whose catalogs differ there would wait for messages of other sizes.
inline std::uint64_t catalog_hash(const plan& p, const catalog& cat) {
  fingerprint h;
  for (const auto& stage : p.stages) {
    for (const auto& s : stage) {
      std::vector<std::optional<std::size_t>> keys;
      for (const auto& k : keys_of(s)) {
        keys.push_back(cat.find_key(k));
        if (keys.back()) {
          const key_schema& schema = cat.keys()[*keys.back()];
          h.add(static_cast<std::uint64_t>(schema.dtype)).add_all(schema.trailing_shape);
        } else {
          h.add(~std::uint64_t{0});  // no rank holds it: the checks before transfer say so
        }
      }
      std::vector<char> seen;
      for_each_transfer(
          s,
          [&](const step_transfer& t) {
            if (t.list >= seen.size()) seen.resize(t.list + 1, 0);
            if (seen[t.list]) return;
            seen[t.list] = 1;
            for (std::uint32_t k = t.first_key; k < t.first_key + t.key_count && k < keys.size(); ++k) {
              if (!keys[k]) continue;
              for (const sample_id id : *t.ids) {
                if (cat.has(id, *keys[k]))
                  h.add_all(cat.seqlens(id, *keys[k]));
                else
                  h.add(~std::uint64_t{0});
              }
            }
          },
          [](const std::string&) {});
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
      .add("allow_lossy", opts.allow_lossy)
      .add("checksums", opts.checksums);
}

// Why this rank cannot take checksums (empty when it can): they read payloads on the host, exact bytes.
template <class Staging, class Space>
std::string checksum_problem(const redistribute_options& opts, const Space&) {
  if (!opts.checksums) return {};
  if constexpr (Space::space != memory_space::host)
    return "redist::redistribute: checksums read payloads on the host: not available for device tensors";
  if (!Staging::lossless && opts.allow_lossy)
    return str("redist::redistribute: checksums compare exact bytes, which ", Staging::label,
               " with allow_lossy may change");
  return {};
}

// This rank's share of the checks made before any byte moves, as its problem in the agreement.
template <class Staging, class Comm, class Tensor, class Space>
std::string problem_before_transfer(const Comm& comm, const sample_store<Tensor>& store, const plan& p,
                                    const catalog& cat, const redistribute_options& opts,
                                    const Space& space) {
  return problem_of(
      [&] { check_before_transfer<Staging>(comm.rank(), comm.size(), store, p, cat, opts, space); });
}

// The agreement of redistribute() (this rank's `problem`, found by the caller, agreed with `call`), then the
// steps, every byte copy made by `space`. With `out`, arriving pairs it wants land there.
template <class Staging, class... Policies, class Comm, class Tensor>
void execute(const Comm& comm, sample_store<Tensor>& store, const plan& p, const catalog& cat,
             const redistribute_options& opts, sequence_batch<Tensor>* out, const call_description& call,
             std::string problem, const space_of<Tensor>& space) {
  std::optional<redistribute_report> report;  // REDIST_DEBUG; off, one branch here and one per step
  if (debug_prints(comm.rank())) [[unlikely]]
    report.emplace(comm.rank(), comm.size());
  if (problem.empty()) problem = space_problem("redist::redistribute", comm, space);
  if (problem.empty()) problem = checksum_problem<Staging>(opts, space);
  agree(comm, "redist::redistribute", problem, call);
  if (report) report->plan_agreed(p, cat, call);
  // Every rank derives the same book from the same tables: copies given that differ throw alike everywhere.
  std::optional<checksum_book> book;
  if (opts.checksums) {
    book.emplace(gather_checksums(comm, given_checksums(comm.rank(), p, cat, store, out)), cat);
    if (!book->problem().empty()) throw error(book->problem());
  }

  std::optional<output_sink<Tensor>> sink;
  if (out) sink.emplace(*out, cat);
  step_context<Comm, Tensor, Staging> ctx(comm, store, cat, opts, sink ? &*sink : nullptr, space);
  std::size_t n = 0;
  for (const auto& stage : p.stages)
    for (const auto& s : stage) {
      const auto start = report ? debug_clock::now() : debug_clock::time_point{};
      std::visit(
          [&](const auto& x) {
            using policy = typename pick_policy<std::decay_t<decltype(x)>, Staging, Policies...>::type;
            policy::run(ctx, x);
          },
          s);
      if (report) report->step_done(n++, s, cat, seconds_since(start));
    }
  if (sink) sink->fill(store, comm.rank(), space);
  if (book) agree(comm, "redist::redistribute", check_arrivals(comm.rank(), p, cat, *book, store, out));
  if (report) report->finished();
}

}  // namespace redist::detail
