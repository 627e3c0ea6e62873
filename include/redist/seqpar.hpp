// redist::seqpar: sequence-parallel (Ulysses) operations on host or device tensors: the all-to-all that
// trades a split dim for a gathered one, slicing and gathering a zero-padded sequence, and a rotating
// double-buffered broadcast.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/comm/communicator.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"
#include "redist/detail/debug.hpp"
#include "redist/detail/hash.hpp"
#include "redist/detail/text.hpp"
#include "redist/seqpar/exchange.hpp"
#include "redist/seqpar/layout.hpp"
#include "redist/seqpar/prepared.hpp"
#include "redist/seqpar/rotating_broadcast.hpp"
#include "redist/staging/exchange.hpp"
#include "redist/staging/workspace.hpp"

// Semantics (those of the sequence-parallel ops this replaces; P = comm.size(), r = comm.rank(); dims may be
// negative and count from the end, as in PyTorch; tensors are dense and row-major):
//
//   all_to_all(comm, x, scatter_dim, gather_dim)
//     x is cut into P equal chunks along scatter_dim; chunk j goes to rank j; the chunks received are
//     concatenated along gather_dim in source-rank order. Output shape: x's with shape[scatter_dim] / P, then
//     shape[gather_dim] * P (scatter_dim == gather_dim keeps the shape: rank r's chunk of every rank,
//     stacked).
//   all_to_all_into(comm, x, scatter_dim, gather_dim, out)
//     The same into a tensor the caller owns. Every exchange takes an optional workspace (see below): its
//     staging buffer is kept between calls, so a loop that repeats an exchange allocates nothing.
//   slice_inputs(comm, x, dim)
//     Local, no communication. unit = ceil(n / P) for n = x.shape[dim]: x is zero-padded at the end of dim to
//     P * unit, and rank r gets rows [r * unit, (r + 1) * unit).
//   gather_outputs(comm, x, dim, unpadded_size)
//     Every rank's x concatenated along dim in rank order (P * x.shape[dim] rows), then cut to the first
//     unpadded_size rows: the inverse of slice_inputs. P * x.shape[dim] must be unpadded_size rounded up to a
//     multiple of P (pass P * x.shape[dim] itself when there is no padding).
//   gather_seq_scatter_heads(comm, x, seq_dim, head_dim [, unpadded_seq_len])
//     all_to_all(comm, x, head_dim, seq_dim): rank r gets heads [r * H / P, (r + 1) * H / P) of the whole
//     sequence. With unpadded_seq_len (the caller's total token count; the seed derived it from a shape
//     tensor as sum(prod(shape, -1))) the sequence's padding is cut off, as gather_outputs does.
//   gather_heads_scatter_seq(comm, x, head_dim, seq_dim)
//     The way back: the sequence is zero-padded at its end to a multiple of P, then all_to_all(comm, x,
//     seq_dim, head_dim): rank r gets sequence rows [r * S' / P, (r + 1) * S' / P) (S' padded) of every head.
//   gather_seq_scatter_heads_qkv(comm, qkv, seq_dim [, unpadded_seq_len])
//     The last dim is a fused projection [q | k | v] of 3 * D: it is viewed as [3, D], D is scattered and
//     seq_dim gathered, and the result is fused again: last dim 3 * D / P = [q_r | k_r | v_r], rank r's
//     heads of each of q, k and v. Sequence padding is cut as in gather_seq_scatter_heads.
//   rotating_broadcast(comm, mine, use [, space [, use_space]])
//     Each rank in turn (k = 0 .. P - 1) broadcasts its own tree of tensors, whose structure and shapes may
//     differ by rank; use(k, tree of rank k) is called on every rank in that order, while rank k + 1's
//     transfer is already under way.
//
// Device tensors: every op takes the memory space of the stream the call is ordered on last (a
// redist::cuda_space on the communicator's stream), after the workspace, which is then a
// space_workspace<cuda_space> (workspace_for<Space>): e.g. all_to_all(comm, x, 2, 1, &ws, space). Packing
// and unpacking are one table (one kernel launch) each; the output is allocated on that stream.
//
// Bad input (dims out of range, extents that do not divide, tensors or arguments that differ between ranks)
// is one redist::error, the same on every rank, raised before any byte moves; the communicator stays usable.
// So is a rank that cannot allocate an exchange's output or staging: both are allocated before the agreement.
// (slice_inputs communicates nothing: it throws on the ranks whose arguments are bad. rotating_broadcast
// allocates each received tree at its step: a rank that cannot is not recovered, as in dispatch.)
namespace redist::seqpar {

// The staging kept between calls (see redist::workspace; for device tensors redist::space_workspace): every
// exchange below takes one.
using workspace = redist::workspace;

}  // namespace redist::seqpar

namespace redist::seqpar {

// One exchange of equal blocks: split x into comm.size() chunks along scatter_dim, send chunk j to rank j,
// concatenate what arrives along gather_dim in rank order (see the semantics above). Any pair of dims of an
// N-d tensor, scatter_dim == gather_dim too; any dtype (bytes move, nothing is converted). x's chunks are
// packed straight into the exchange buffer in one pass, or sent from x itself when they are contiguous in it
// (scatter_dim 0, or every dim before it of extent 1); blocks are received straight into the output when
// contiguous there (likewise for gather_dim), else unpacked in one pass. The buffer comes from `ws` when
// given (see workspace), else it is allocated for the call.
// Collective. Costs one allgather (agreement on dtype, shape and dims) and one comm.alltoall; with a
// prepared exchange (seqpar/prepared.hpp), repeated calls skip the agreement.
// Throws redist::error on every rank when a dim is out of range, x.shape[scatter_dim] is not divisible by the
// ranks, the ranks' dtypes, shapes or dims differ, or a rank cannot allocate its output or staging.
template <class Out = void, tensor_like In, communicator Comm, class Space = host_space>
detail::seqpar::output_t<Out, In> all_to_all(const Comm& comm, const In& x, int scatter_dim, int gather_dim,
                                             workspace_for<Space>* ws = nullptr, const Space& space = {}) {
  namespace sp = detail::seqpar;
  constexpr const char* who = "redist::seqpar::all_to_all";
  return sp::run_exchange<sp::output_t<Out, In>>(
      who, x, comm, sp::all_to_all_args(x, scatter_dim, gather_dim),
      sp::all_to_all_layout(who, scatter_dim, gather_dim, comm.size()), ws, space);
}

// all_to_all into a tensor the caller owns (with `ws`, nothing is allocated: the form for loops that repeat
// one exchange). out must have x's dtype and the result's shape, be contiguous and not overlap x; a rank
// whose out is wrong makes every rank throw the same redist::error before any byte moves.
template <tensor_like In, tensor_like Out, communicator Comm, class Space = host_space>
void all_to_all_into(const Comm& comm, const In& x, int scatter_dim, int gather_dim, Out& out,
                     workspace_for<Space>* ws = nullptr, const Space& space = {}) {
  namespace sp = detail::seqpar;
  sp::require_tensors<In, Out, Space>();
  constexpr const char* who = "redist::seqpar::all_to_all_into";
  sp::own_staging<Space> own(space);
  std::byte* staging = nullptr;
  const sp::a2a_layout l = sp::agreed_layout(
      who, x, comm, space, sp::all_to_all_args(x, scatter_dim, gather_dim),
      sp::all_to_all_layout(who, scatter_dim, gather_dim, comm.size()), [&](const sp::a2a_layout& lay) {
        sp::check_output(who, x, out, lay);
        detail::allocating(who, comm.rank(), "its output or staging",
                           [&] { staging = sp::reserve_staging(lay, ws, own); });
      });
  sp::exchange(who, l, sp::bytes_of(x), sp::bytes_of(out), comm, staging, space);
}

// This rank's slice of x along dim: rows [r * unit, (r + 1) * unit) of x zero-padded at the end of dim to
// P * unit rows, unit = ceil(x.shape[dim] / P). Local: communicates nothing (comm gives the rank and size),
// so a bad dim throws on the ranks that pass it.
template <class Out = void, tensor_like In, communicator Comm, class Space = host_space>
detail::seqpar::output_t<Out, In> slice_inputs(const Comm& comm, const In& x, int dim,
                                               const Space& space = {}) {
  namespace sp = detail::seqpar;
  using Result = sp::output_t<Out, In>;
  sp::require_tensors<In, Result, Space>();
  [[maybe_unused]] const auto scope = detail::allocation_scope(space);
  constexpr const char* who = "redist::seqpar::slice_inputs";
  sp::check_contiguous(who, "x", x);
  const sp::shape_t shape = sp::shape_of(x);
  const std::size_t d = sp::dim_index(who, "dim", dim, shape.size());
  const std::int64_t P = comm.size();
  sp::shape_t out_shape = shape;
  out_shape[d] = (shape[d] + P - 1) / P;
  const dtype type = tensor_traits<In>::dtype(x);
  Result out = sp::allocate<Result>(type, out_shape);
  detail::phase_copies<Space> copies;
  sp::slice_rows(shape, size_of(type), d, static_cast<std::size_t>(comm.rank()), static_cast<std::size_t>(P),
                 sp::bytes_of(x), sp::bytes_of(out), copies);
  copies.run(space);
  return out;
}

// Every rank's x concatenated along dim in rank order, cut to its first unpadded_size rows: the inverse of
// slice_inputs. comm.size() * x.shape[dim] must be unpadded_size rounded up to a multiple of comm.size()
// (pass comm.size() * x.shape[dim] when nothing is padded). Collective: one allgather (agreement) and one
// exchange, received straight into the output when dim is 0 (or every dim before it has extent 1) and
// nothing is cut, else through one buffer. Throws redist::error on every rank when dim is out of range,
// unpadded_size does not fit, or the ranks' dtypes, shapes, dims or unpadded_size differ.
template <class Out = void, tensor_like In, communicator Comm, class Space = host_space>
detail::seqpar::output_t<Out, In> gather_outputs(const Comm& comm, const In& x, int dim,
                                                 std::int64_t unpadded_size, const Space& space = {}) {
  namespace sp = detail::seqpar;
  using Result = sp::output_t<Out, In>;
  sp::require_tensors<In, Result, Space>();
  [[maybe_unused]] const auto scope = detail::allocation_scope(space);
  constexpr const char* who = "redist::seqpar::gather_outputs";
  const sp::shape_t shape = sp::shape_of(x);
  const dtype type = tensor_traits<In>::dtype(x);
  const std::size_t elem = size_of(type);
  const std::int64_t P = comm.size();
  const auto n = static_cast<std::size_t>(P);
  std::size_t outer = 0, rows = 0, inner = 0;
  const auto keep_rows = static_cast<std::size_t>(unpadded_size);
  std::optional<Result> out;
  sp::own_staging<Space> scratch(space);  // the padding rows received, dropped
  std::byte* spare = nullptr;
  std::string problem = detail::problem_of([&] {
    sp::check_contiguous(who, "x", x);
    const std::size_t d = sp::dim_index(who, "dim", dim, shape.size());
    sp::check_unpadded(who, "unpadded_size", unpadded_size, shape[d] * P, P);
    sp::shape_t out_shape = shape;
    out_shape[d] = unpadded_size;
    (void)detail::dense_bytes(type, out_shape, who);
    outer = sp::product(shape, 0, d);
    rows = static_cast<std::size_t>(shape[d]);
    inner = sp::product(shape, d + 1, shape.size()) * elem;
    detail::allocating(who, comm.rank(), "its output or staging", [&] {
      out.emplace(sp::allocate<Result>(type, out_shape));
      spare = scratch.get(outer * (rows * n - keep_rows) * inner + 1);
    });
  });
  if (problem.empty()) problem = detail::space_problem(who, comm, space);
  detail::agree(comm, who, problem,
                sp::describe_x(who, type, shape,
                               detail::call_description()
                                   .add("dim", sp::normalized(dim, shape.size()))
                                   .add("unpadded_size", unpadded_size)));
  const std::size_t mine = outer * rows * inner;
  if (mine == 0) return std::move(*out);  // the same shape everywhere: every rank skips
  // Every rank sends all of x to every rank; the rows of rank i land at [i * rows, ...) of each outer index,
  // those beyond unpadded_size in a scratch area of their own (segments must not overlap).
  std::vector<std::vector<const_segment>> send(n, std::vector<const_segment>{{sp::bytes_of(x), mine}});
  std::vector<std::vector<segment>> recv(n);
  std::byte* at = sp::bytes_of(*out);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t first = i * rows;
    const std::size_t keep = first >= keep_rows ? 0 : std::min(rows, keep_rows - first);
    for (std::size_t a = 0; a < outer; ++a) {
      if (keep != 0) recv[i].push_back({at + (a * keep_rows + first) * inner, keep * inner});
      if (keep != rows) {
        recv[i].push_back({spare, (rows - keep) * inner});
        spare += (rows - keep) * inner;
      }
    }
  }
  std::optional<detail::debug_op_timer> timer;  // REDIST_DEBUG
  if (detail::debug_prints(comm.rank())) [[unlikely]]
    timer.emplace();
  detail::exchange_segments(comm, std::span<const std::vector<const_segment>>(send),
                            std::span<const std::vector<segment>>(recv), space);
  if (timer) {
    const std::uint64_t moved = (n - 1) * mine;
    detail::debug_print(comm.rank(), comm.size(), who, ": x ", detail::shape_text(shape), " along dim ",
                        sp::normalized(dim, shape.size()), ", ", unpadded_size,
                        " rows kept: ", timer->figures(moved, moved));
  }
  return std::move(*out);
}

// all_to_all(comm, x, head_dim, seq_dim): every rank's sequence, rank r's heads [r * H / P, (r + 1) * H / P).
// With unpadded_seq_len, the gathered sequence (P * x.shape[seq_dim] rows, which must be unpadded_seq_len
// rounded up to a multiple of P) is cut to its first unpadded_seq_len rows while it is unpacked. Collective:
// as all_to_all; throws redist::error on every rank when the dims are out of range or equal, the heads do not
// divide by the ranks, unpadded_seq_len does not fit, or the ranks' calls differ.
template <class Out = void, tensor_like In, communicator Comm, class Space = host_space>
detail::seqpar::output_t<Out, In> gather_seq_scatter_heads(const Comm& comm, const In& x, int seq_dim,
                                                           int head_dim,
                                                           std::optional<std::int64_t> unpadded_seq_len = {},
                                                           workspace_for<Space>* ws = nullptr,
                                                           const Space& space = {}) {
  namespace sp = detail::seqpar;
  constexpr const char* who = "redist::seqpar::gather_seq_scatter_heads";
  const std::size_t rank = tensor_traits<In>::rank(x);
  const auto extra = detail::call_description()
                         .add("seq_dim", sp::normalized(seq_dim, rank))
                         .add("head_dim", sp::normalized(head_dim, rank))
                         .add("unpadded_seq_len", sp::optional_text(unpadded_seq_len));
  const std::int64_t P = comm.size();
  return sp::run_exchange<sp::output_t<Out, In>>(
      who, x, comm, extra,
      [&](const sp::shape_t& s, std::size_t e) {
        const std::size_t sd = sp::dim_index(who, "seq_dim", seq_dim, s.size());
        const std::size_t hd = sp::dim_index(who, "head_dim", head_dim, s.size());
        if (sd == hd) detail::fail(who, ": seq_dim and head_dim are both dim ", sd);
        if (s[hd] % P != 0) {
          detail::fail(who, ": head_dim ", hd, " has extent ", s[hd], " (shape ", detail::shape_text(s),
                       "), not divisible by the ", P, " ranks");
        }
        const std::int64_t gathered = s[sd] * P;
        if (unpadded_seq_len) sp::check_unpadded(who, "unpadded_seq_len", *unpadded_seq_len, gathered, P);
        return sp::make_layout(who, s, e, hd, sd, static_cast<std::size_t>(P), s[hd],
                               unpadded_seq_len.value_or(gathered));
      },
      ws, space);
}

// The way back from gather_seq_scatter_heads: the sequence is zero-padded at its end to S' = x.shape[seq_dim]
// rounded up to a multiple of P (while it is packed, no padded copy), then all_to_all(comm, x, seq_dim,
// head_dim): rank r gets sequence rows [r * S' / P, (r + 1) * S' / P) of all P * x.shape[head_dim] heads.
// Collective: as all_to_all; throws redist::error on every rank when the dims are out of range or equal, or
// the ranks' calls differ.
template <class Out = void, tensor_like In, communicator Comm, class Space = host_space>
detail::seqpar::output_t<Out, In> gather_heads_scatter_seq(const Comm& comm, const In& x, int head_dim,
                                                           int seq_dim, workspace_for<Space>* ws = nullptr,
                                                           const Space& space = {}) {
  namespace sp = detail::seqpar;
  constexpr const char* who = "redist::seqpar::gather_heads_scatter_seq";
  const std::size_t rank = tensor_traits<In>::rank(x);
  const auto extra = detail::call_description()
                         .add("head_dim", sp::normalized(head_dim, rank))
                         .add("seq_dim", sp::normalized(seq_dim, rank));
  const std::int64_t P = comm.size();
  return sp::run_exchange<sp::output_t<Out, In>>(
      who, x, comm, extra,
      [&](const sp::shape_t& s, std::size_t e) {
        const std::size_t hd = sp::dim_index(who, "head_dim", head_dim, s.size());
        const std::size_t sd = sp::dim_index(who, "seq_dim", seq_dim, s.size());
        if (sd == hd) detail::fail(who, ": seq_dim and head_dim are both dim ", sd);
        return sp::make_layout(who, s, e, sd, hd, static_cast<std::size_t>(P), sp::round_up(s[sd], P),
                               s[hd] * P);
      },
      ws, space);
}

// The fused-projection form: qkv's last dim is [q | k | v], 3 * D wide. It is viewed as [.., 3, D]; D is
// scattered (D / P must be whole) and seq_dim gathered, so rank r gets columns [r * D / P, (r + 1) * D / P)
// of each of q, k and v, fused again: output last dim 3 * D / P = [q_r | k_r | v_r], seq_dim P * its extent
// (cut to unpadded_seq_len when given, as in gather_seq_scatter_heads). seq_dim must not be the last dim.
// Collective: as all_to_all.
template <class Out = void, tensor_like In, communicator Comm, class Space = host_space>
detail::seqpar::output_t<Out, In> gather_seq_scatter_heads_qkv(
    const Comm& comm, const In& qkv, int seq_dim, std::optional<std::int64_t> unpadded_seq_len = {},
    workspace_for<Space>* ws = nullptr, const Space& space = {}) {
  namespace sp = detail::seqpar;
  using Result = sp::output_t<Out, In>;
  sp::require_tensors<In, Result, Space>();
  [[maybe_unused]] const auto scope = detail::allocation_scope(space);
  constexpr const char* who = "redist::seqpar::gather_seq_scatter_heads_qkv";
  const sp::shape_t shape = sp::shape_of(qkv);
  const dtype type = tensor_traits<In>::dtype(qkv);
  const std::int64_t P = comm.size();
  sp::a2a_layout l;
  std::optional<Result> out;
  sp::own_staging<Space> own(space);
  std::byte* staging = nullptr;
  std::string problem = detail::problem_of([&] {
    sp::check_contiguous(who, "qkv", qkv);
    const std::size_t sd = sp::dim_index(who, "seq_dim", seq_dim, shape.size());
    const std::size_t last = shape.size() - 1;
    if (sd == last)
      detail::fail(who, ": seq_dim ", sd, " is the last dim, which holds the fused [q | k | v]");
    const std::int64_t fused = shape[last];
    if (fused % 3 != 0) {
      detail::fail(who, ": the last dim has extent ", fused, " (shape ", detail::shape_text(shape),
                   "), not 3 equal parts q, k and v");
    }
    if (fused / 3 % P != 0) {
      detail::fail(who, ": each of q, k and v has ", fused / 3, " columns (shape ", detail::shape_text(shape),
                   "), not divisible by the ", P, " ranks");
    }
    const std::int64_t gathered = shape[sd] * P;
    if (unpadded_seq_len) sp::check_unpadded(who, "unpadded_seq_len", *unpadded_seq_len, gathered, P);
    sp::shape_t split(shape.begin(), shape.end() - 1);
    split.push_back(3);
    split.push_back(fused / 3);
    l = sp::make_layout(who, split, size_of(type), last + 1, sd, static_cast<std::size_t>(P), fused / 3,
                        unpadded_seq_len.value_or(gathered));
    sp::shape_t out_shape(l.out.begin(), l.out.end() - 1);
    out_shape.back() = 3 * (fused / 3 / P);
    detail::allocating(who, comm.rank(), "its output or staging", [&] {
      out.emplace(sp::allocate<Result>(type, out_shape));
      staging = sp::reserve_staging(l, ws, own);
    });
  });
  if (problem.empty()) problem = detail::space_problem(who, comm, space);
  detail::agree(comm, who, problem,
                sp::describe_x(who, type, shape,
                               detail::call_description()
                                   .add("seq_dim", sp::normalized(seq_dim, shape.size()))
                                   .add("unpadded_seq_len", sp::optional_text(unpadded_seq_len))));
  sp::exchange(who, l, sp::bytes_of(qkv), sp::bytes_of(*out), comm, staging, space);
  return std::move(*out);
}

}  // namespace redist::seqpar
