// redist::seqpar: sequence-parallel (Ulysses) operations on host tensors: the all-to-all that trades a split
// dim for a gathered one, slicing and gathering a zero-padded sequence, and a rotating double-buffered
// broadcast.
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
#include "redist/detail/hash.hpp"
#include "redist/detail/text.hpp"
#include "redist/staging/exchange.hpp"
#include "redist/staging/workspace.hpp"

// Semantics (those of the sequence-parallel ops this replaces; P = comm.size(), r = comm.rank(); dims may be
// negative and count from the end, as in PyTorch; tensors are dense, row-major, in host memory):
//
//   all_to_all(x, scatter_dim, gather_dim, comm)
//     x is cut into P equal chunks along scatter_dim; chunk j goes to rank j; the chunks received are
//     concatenated along gather_dim in source-rank order. Output shape: x's with shape[scatter_dim] / P, then
//     shape[gather_dim] * P (scatter_dim == gather_dim keeps the shape: rank r's chunk of every rank,
//     stacked).
//   all_to_all_into(x, scatter_dim, gather_dim, out, comm)
//     The same into a tensor the caller owns. Every exchange takes an optional seqpar::workspace* last: its
//     staging buffer is kept between calls, so a loop that repeats an exchange allocates nothing.
//   slice_inputs(x, dim, comm)
//     Local, no communication. unit = ceil(n / P) for n = x.shape[dim]: x is zero-padded at the end of dim to
//     P * unit, and rank r gets rows [r * unit, (r + 1) * unit).
//   gather_outputs(x, dim, unpadded_size, comm)
//     Every rank's x concatenated along dim in rank order (P * x.shape[dim] rows), then cut to the first
//     unpadded_size rows: the inverse of slice_inputs. P * x.shape[dim] must be unpadded_size rounded up to a
//     multiple of P (pass P * x.shape[dim] itself when there is no padding).
//   gather_seq_scatter_heads(x, seq_dim, head_dim, comm [, unpadded_seq_len])
//     all_to_all(x, head_dim, seq_dim): rank r gets heads [r * H / P, (r + 1) * H / P) of the whole sequence.
//     With unpadded_seq_len (the caller's total token count; the seed derived it from a shape tensor as
//     sum(prod(shape, -1))) the sequence's padding is cut off, as gather_outputs does.
//   gather_heads_scatter_seq(x, head_dim, seq_dim, comm)
//     The way back: the sequence is zero-padded at its end to a multiple of P, then all_to_all(x, seq_dim,
//     head_dim): rank r gets sequence rows [r * S' / P, (r + 1) * S' / P) (S' padded) of every head.
//   gather_seq_scatter_heads_qkv(qkv, seq_dim, comm [, unpadded_seq_len])
//     The last dim is a fused projection [q | k | v] of 3 * D: it is viewed as [3, D], D is scattered and
//     seq_dim gathered, and the result is fused again: last dim 3 * D / P = [q_r | k_r | v_r], rank r's
//     heads of each of q, k and v. Sequence padding is cut as in gather_seq_scatter_heads.
//   rotating_broadcast(comm, mine, use)
//     Each rank in turn (k = 0 .. P - 1) broadcasts its own tree of tensors, whose structure and shapes may
//     differ by rank; use(k, tree of rank k) is called on every rank in that order, while rank k + 1's
//     transfer is already under way.
//
// Bad input (dims out of range, extents that do not divide, tensors or arguments that differ between ranks)
// is one redist::error, the same on every rank, raised before any byte moves; the communicator stays usable.
// So is a rank that cannot allocate an exchange's output or staging: both are allocated before the agreement.
// (slice_inputs communicates nothing: it throws on the ranks whose arguments are bad. rotating_broadcast
// allocates each received tree at its step: a rank that cannot is not recovered, as in dispatch.)
namespace redist::seqpar {

// The staging kept between calls (see redist::workspace): every exchange below takes one.
using workspace = redist::workspace;

}  // namespace redist::seqpar

namespace redist::detail::seqpar {

// ---- shapes, arguments and their agreement ----------------------------------------------------------------

using shape_t = std::vector<std::int64_t>;

template <class T>
shape_t shape_of(const T& t) {
  shape_t s(tensor_traits<T>::rank(t));
  for (std::size_t d = 0; d < s.size(); ++d) s[d] = static_cast<std::int64_t>(tensor_traits<T>::extent(t, d));
  return s;
}

template <class T>
constexpr void require_host_tensor() {
  static_assert(tensor_like<T>, "redist::seqpar: the tensor type does not satisfy redist::tensor_like");
  static_assert(tensor_space<T> == memory_space::host,
                "redist::seqpar: the tensor type lives in device memory; these operations pack and unpack "
                "bytes on the host");
}

// The tensor type an operation returns: Out when given, else the input's type if it can allocate, else
// host_tensor (a view in, an owning tensor out).
template <class Out, class In>
struct output_of {
  using type = Out;
};
template <class In>
struct output_of<void, In> {
  using type = std::conditional_t<allocatable_tensor<In>, In, host_tensor>;
};
template <class Out, class In>
using output_t = typename output_of<Out, In>::type;

template <class T>
void check_contiguous(const char* who, const char* what, const T& t) {
  if constexpr (traits_have_contiguity<T>) {
    if (!tensor_traits<T>::is_contiguous(t)) fail(who, ": ", what, " is not contiguous");
  }
}

// A dim as PyTorch takes it (negative counts from the end) as an index; throws when out of range.
inline std::size_t dim_index(const char* who, const char* name, std::int64_t dim, std::size_t rank) {
  const auto n = static_cast<std::int64_t>(rank);
  if (dim < -n || dim >= n) {
    fail(who, ": ", name, " ", dim, " is out of range for a tensor of ", rank, " dims (valid: ", -n, " to ",
         n - 1, ")");
  }
  return static_cast<std::size_t>(dim < 0 ? dim + n : dim);
}

// The dim as an index when in range, else the value passed: what a rank's call is described with.
inline std::int64_t normalized(std::int64_t dim, std::size_t rank) {
  const auto n = static_cast<std::int64_t>(rank);
  return dim < 0 && dim >= -n ? dim + n : dim;
}

// ---- byte movement ----------------------------------------------------------------------------------------

inline void copy(const std::byte* from, std::size_t n, std::byte* to) noexcept {
  host_space::copy(to, from, n);
}
inline void zero(std::byte* to, std::size_t n) noexcept { host_space::fill(to, n); }

inline std::size_t product(std::span<const std::int64_t> s, std::size_t begin, std::size_t end) {
  std::size_t n = 1;
  for (std::size_t d = begin; d < end; ++d) n *= static_cast<std::size_t>(s[d]);
  return n;
}

// How one all-to-all moves bytes. Input x (shape `in`) is seen as [outer_s, rows_s, inner_s bytes] around the
// scatter dim, padded with zero rows to P * chunk_s rows; the send buffer is P blocks, block j = for each
// outer index, rows [j * chunk_s, (j + 1) * chunk_s). A received block (one chunk, shape `chunk`) is seen as
// [outer_g, chunk_g, inner_g bytes] around the gather dim; the block of rank i lands at rows
// [i * chunk_g, (i + 1) * chunk_g) of the output [outer_g, keep_g, inner_g], rows >= keep_g dropped.
struct a2a_layout {
  std::size_t ranks = 1;
  shape_t in, chunk, out;  // out: the chunk with the gather dim of P * chunk_g rows, cut to keep_g
  std::size_t outer_s = 1, rows_s = 0, chunk_s = 0, inner_s = 0;
  std::size_t outer_g = 1, chunk_g = 0, keep_g = 0, inner_g = 0;
  std::size_t block = 0;  // bytes to (from) each rank
  bool send_in_place = false, recv_in_place = false;
};

// scatter_rows: the scatter dim's extent after padding (>= in[scatter]), a multiple of P; keep_rows: rows of
// the gather dim kept (<= P * chunk[gather]). Throws on sizes that overflow.
inline a2a_layout make_layout(const char* who, std::span<const std::int64_t> in, std::size_t elem,
                              std::size_t scatter, std::size_t gather, std::size_t ranks,
                              std::int64_t scatter_rows, std::int64_t keep_rows) {
  a2a_layout l;
  l.ranks = ranks;
  l.in.assign(in.begin(), in.end());
  l.chunk = l.in;
  l.chunk[scatter] = scatter_rows / static_cast<std::int64_t>(ranks);
  l.out = l.chunk;
  l.out[gather] = keep_rows;
  l.outer_s = product(in, 0, scatter);
  l.rows_s = static_cast<std::size_t>(in[scatter]);
  l.chunk_s = static_cast<std::size_t>(l.chunk[scatter]);
  l.outer_g = product(l.chunk, 0, gather);
  l.chunk_g = static_cast<std::size_t>(l.chunk[gather]);
  l.keep_g = static_cast<std::size_t>(keep_rows);
  // The chunk and the output may be larger than x (padding): their byte sizes are checked.
  std::size_t total = 0;
  std::size_t out_bytes = 0;
  if (!checked_mul(dense_bytes(dtype::u8, l.chunk, who), elem, l.block) ||
      !checked_mul(l.block, ranks, total) || !checked_add(total, total, out_bytes) ||
      !checked_mul(dense_bytes(dtype::u8, l.out, who), elem, out_bytes)) {
    fail(who, ": the exchange's size overflows");
  }
  l.inner_s = product(in, scatter + 1, in.size()) * elem;
  l.inner_g = product(l.chunk, gather + 1, l.chunk.size()) * elem;
  // Blocks are contiguous pieces of x (and of the output) when nothing comes before the split dim.
  const bool unpadded = l.chunk_s * ranks == l.rows_s;
  const bool uncut = l.keep_g == l.chunk_g * ranks;
  l.send_in_place = unpadded && (l.outer_s == 1 || ranks == 1);
  l.recv_in_place = uncut && (l.outer_g == 1 || ranks == 1);
  return l;
}

// x -> the send buffer (P * block bytes), zero rows where x is padded, in one pass.
inline void pack(const a2a_layout& l, const std::byte* x, std::byte* send) noexcept {
  const std::size_t piece = l.chunk_s * l.inner_s;
  for (std::size_t a = 0; a < l.outer_s; ++a) {
    const std::byte* row = x + a * l.rows_s * l.inner_s;
    for (std::size_t j = 0; j < l.ranks; ++j) {
      const std::size_t first = j * l.chunk_s;
      const std::size_t real = first >= l.rows_s ? 0 : std::min(l.chunk_s, l.rows_s - first);
      std::byte* to = send + (j * l.outer_s + a) * piece;
      copy(row + first * l.inner_s, real * l.inner_s, to);
      zero(to + real * l.inner_s, piece - real * l.inner_s);
    }
  }
}

// The receive buffer (P blocks, block i from rank i) -> the output, rows beyond keep_g dropped, in one pass.
inline void unpack(const a2a_layout& l, const std::byte* recv, std::byte* out) noexcept {
  const std::size_t piece = l.chunk_g * l.inner_g;
  for (std::size_t g = 0; g < l.outer_g; ++g) {
    std::byte* row = out + g * l.keep_g * l.inner_g;
    for (std::size_t i = 0; i < l.ranks; ++i) {
      const std::size_t first = i * l.chunk_g;
      const std::size_t keep = first >= l.keep_g ? 0 : std::min(l.chunk_g, l.keep_g - first);
      copy(recv + (i * l.outer_g + g) * piece, keep * l.inner_g, row + first * l.inner_g);
    }
  }
}

// The staging an exchange packs into or receives into: none when x is sent and the output received in place.
inline std::size_t staging_bytes(const a2a_layout& l) noexcept {
  const std::size_t total = l.block * l.ranks;
  return (l.send_in_place ? 0 : total) + (l.recv_in_place ? 0 : total);
}

// The staging for layout l: from ws when given (kept between calls), else one plain new[] held by `own` for
// the call, not a page-aligned workspace: glibc serves a block of the size just freed from its heap, and the
// aligned request, a page larger, misses the freed blocks and lands on fresh pages (a loop of 16 MiB calls
// faulted 1.8 buffers' pages per call that way, 0.8 with new[]).
inline std::byte* reserve_staging(const a2a_layout& l, redist::seqpar::workspace* ws,
                                  std::unique_ptr<std::byte[]>& own) {
  const std::size_t bytes = staging_bytes(l);
  if (bytes == 0) return nullptr;
  if (ws != nullptr) return ws->reserve(bytes);
  own.reset(new std::byte[bytes]);
  return own.get();
}

// One comm.alltoall of equal blocks, from x itself or a packed buffer, into the output itself or a buffer
// unpacked afterwards; staging holds staging_bytes(l) bytes (see reserve_staging).
template <class Comm>
void exchange(const a2a_layout& l, const std::byte* x, std::byte* out, const Comm& comm, std::byte* staging) {
  if (l.block == 0) return;  // every rank agreed on the shape: every rank skips
  const std::size_t total = l.block * l.ranks;
  std::byte* buffer = staging;
  const std::byte* send = x;
  if (!l.send_in_place) {
    pack(l, x, buffer);
    send = buffer;
    buffer += total;
  }
  std::byte* recv = l.recv_in_place ? out : buffer;
  comm.alltoall(std::span(send, total), std::span(recv, total), l.block);
  if (!l.recv_in_place) unpack(l, recv, out);
}

// Rank `rank` of `ranks`'s slice of x (shape `in`) along dim, zero-padded: see slice_inputs.
inline void slice_rows(std::span<const std::int64_t> in, std::size_t elem, std::size_t dim, std::size_t rank,
                       std::size_t ranks, const std::byte* x, std::byte* out) noexcept {
  const std::size_t outer = product(in, 0, dim);
  const auto rows = static_cast<std::size_t>(in[dim]);
  const std::size_t unit = (rows + ranks - 1) / ranks;
  const std::size_t inner = product(in, dim + 1, in.size()) * elem;
  const std::size_t first = rank * unit;
  const std::size_t real = first >= rows ? 0 : std::min(unit, rows - first);
  for (std::size_t a = 0; a < outer; ++a) {
    std::byte* to = out + a * unit * inner;
    copy(x + (a * rows + first) * inner, real * inner, to);
    zero(to + real * inner, (unit - real) * inner);
  }
}

inline std::int64_t round_up(std::int64_t n, std::int64_t m) { return (n + m - 1) / m * m; }

// Throws unless `gathered` rows are `unpadded` rounded up to a multiple of `ranks`.
inline void check_unpadded(const char* who, const char* name, std::int64_t unpadded, std::int64_t gathered,
                           std::int64_t ranks) {
  if (unpadded < 0 || unpadded > gathered || gathered - unpadded >= ranks || gathered % ranks != 0) {
    fail(who, ": ", name, " ", unpadded, " does not fit the ", gathered, " gathered rows: with ", ranks,
         " ranks they must be ", name, " rounded up to a multiple of ", ranks,
         " (slice_inputs' padding), or the full count when nothing is padded");
  }
}

template <class Out>
Out allocate(dtype t, const shape_t& shape) {
  return tensor_traits<Out>::allocate(t, std::span<const std::int64_t>(shape));
}

template <class T>
const std::byte* bytes_of(const T& t) {
  return static_cast<const std::byte*>(tensor_traits<T>::data(t));
}
template <class T>
std::byte* bytes_of(T& t) {
  return static_cast<std::byte*>(tensor_traits<T>::data(t));
}

inline std::string optional_text(std::optional<std::int64_t> v) { return v ? str(*v) : "none"; }

// A call's description for its agreement: the op, x's dtype and shape, then the arguments beyond x.
inline call_description describe_x(const char* who, dtype type, std::span<const std::int64_t> shape,
                                   const call_description& rest) {
  call_description d;
  d.add("op", who).add("x", str(name(type), ' ', shape_text(shape)));
  return d.add(rest);
}

// Checks x, computes the layout with make(shape, elem) (which throws on bad arguments), runs check(layout)
// (which throws on a bad output tensor), and agrees on the call: extra describes the arguments beyond x.
template <class In, class Comm, class Make, class Check>
a2a_layout agreed_layout(const char* who, const In& x, const Comm& comm, const call_description& extra,
                         Make make, Check check) {
  require_host_tensor<In>();
  const shape_t shape = shape_of(x);
  const dtype type = tensor_traits<In>::dtype(x);
  a2a_layout l;
  const std::string problem = detail::problem_of([&] {
    check_contiguous(who, "x", x);
    l = make(shape, size_of(type));
    check(l);
  });
  agree(comm, who, problem, describe_x(who, type, shape, extra));
  return l;
}

// The all-to-all behind the public exchanges that return a new tensor.
template <class Out, class In, class Comm, class Make>
Out run_exchange(const char* who, const In& x, const Comm& comm, const call_description& extra, Make make,
                 redist::seqpar::workspace* ws) {
  require_host_tensor<Out>();
  std::optional<Out> out;
  std::unique_ptr<std::byte[]> own;
  std::byte* staging = nullptr;
  const a2a_layout l = agreed_layout(who, x, comm, extra, make, [&](const a2a_layout& lay) {
    detail::allocating(who, comm.rank(), "its output or staging", [&] {
      out.emplace(allocate<Out>(tensor_traits<In>::dtype(x), lay.out));
      staging = reserve_staging(lay, ws, own);
    });
  });
  exchange(l, bytes_of(x), bytes_of(*out), comm, staging);
  return std::move(*out);
}

// Throws unless out can receive the exchange: x's dtype, the layout's output shape, contiguous, and apart
// from x (x is read while out is written).
template <class In, class Out>
void check_output(const char* who, const In& x, const Out& out, const a2a_layout& l) {
  check_contiguous(who, "out", out);
  const shape_t shape = shape_of(out);
  if (tensor_traits<Out>::dtype(out) != tensor_traits<In>::dtype(x) || shape != l.out) {
    fail(who, ": out is ", name(tensor_traits<Out>::dtype(out)), ' ', shape_text(shape), ", expected ",
         name(tensor_traits<In>::dtype(x)), ' ', shape_text(l.out));
  }
  const std::size_t n = dense_bytes(tensor_traits<In>::dtype(x), shape_of(x), who);
  const std::byte* a = bytes_of(x);
  const std::byte* b = bytes_of(out);
  const std::size_t m = dense_bytes(tensor_traits<Out>::dtype(out), shape, who);
  if (n != 0 && m != 0 && std::less<>{}(a, b + m) && std::less<>{}(b, a + n))
    fail(who, ": out overlaps x; the exchange reads x while it writes out");
}

// all_to_all's description of its arguments and its layout maker.
template <class In>
call_description all_to_all_args(const In& x, int scatter_dim, int gather_dim) {
  const std::size_t rank = tensor_traits<In>::rank(x);
  return call_description()
      .add("scatter_dim", normalized(scatter_dim, rank))
      .add("gather_dim", normalized(gather_dim, rank));
}

inline auto all_to_all_layout(const char* who, int scatter_dim, int gather_dim, int ranks) {
  return [=](const shape_t& s, std::size_t elem) {
    const std::size_t sd = dim_index(who, "scatter_dim", scatter_dim, s.size());
    const std::size_t gd = dim_index(who, "gather_dim", gather_dim, s.size());
    if (s[sd] % ranks != 0) {
      fail(who, ": scatter_dim ", sd, " has extent ", s[sd], " (shape ", shape_text(s),
           "), not divisible by the ", ranks, " ranks");
    }
    const std::int64_t chunk_g = sd == gd ? s[sd] / ranks : s[gd];
    return make_layout(who, s, elem, sd, gd, static_cast<std::size_t>(ranks), s[sd], chunk_g * ranks);
  };
}

}  // namespace redist::detail::seqpar

namespace redist::seqpar {

// One exchange of equal blocks: split x into comm.size() chunks along scatter_dim, send chunk j to rank j,
// concatenate what arrives along gather_dim in rank order (see the semantics above). Any pair of dims of an
// N-d tensor, scatter_dim == gather_dim too; any dtype (bytes move, nothing is converted). x's chunks are
// packed straight into the exchange buffer in one pass, or sent from x itself when they are contiguous in it
// (scatter_dim 0, or every dim before it of extent 1); blocks are received straight into the output when
// contiguous there (likewise for gather_dim), else unpacked in one pass. The buffer comes from `ws` when
// given (see workspace), else it is allocated for the call.
// Collective. Costs one allreduce (agreement on dtype, shape and dims) and one comm.alltoall.
// Throws redist::error on every rank when a dim is out of range, x.shape[scatter_dim] is not divisible by the
// ranks, the ranks' dtypes, shapes or dims differ, or a rank cannot allocate its output or staging.
template <class Out = void, tensor_like In, communicator Comm>
detail::seqpar::output_t<Out, In> all_to_all(const In& x, int scatter_dim, int gather_dim, const Comm& comm,
                                             workspace* ws = nullptr) {
  namespace sp = detail::seqpar;
  constexpr const char* who = "redist::seqpar::all_to_all";
  return sp::run_exchange<sp::output_t<Out, In>>(
      who, x, comm, sp::all_to_all_args(x, scatter_dim, gather_dim),
      sp::all_to_all_layout(who, scatter_dim, gather_dim, comm.size()), ws);
}

// all_to_all into a tensor the caller owns (with `ws`, nothing is allocated: the form for loops that repeat
// one exchange). out must have x's dtype and the result's shape, be contiguous and not overlap x; a rank
// whose out is wrong makes every rank throw the same redist::error before any byte moves.
template <tensor_like In, tensor_like Out, communicator Comm>
void all_to_all_into(const In& x, int scatter_dim, int gather_dim, Out& out, const Comm& comm,
                     workspace* ws = nullptr) {
  namespace sp = detail::seqpar;
  sp::require_host_tensor<Out>();
  constexpr const char* who = "redist::seqpar::all_to_all_into";
  std::unique_ptr<std::byte[]> own;
  std::byte* staging = nullptr;
  const sp::a2a_layout l = sp::agreed_layout(
      who, x, comm, sp::all_to_all_args(x, scatter_dim, gather_dim),
      sp::all_to_all_layout(who, scatter_dim, gather_dim, comm.size()), [&](const sp::a2a_layout& lay) {
        sp::check_output(who, x, out, lay);
        detail::allocating(who, comm.rank(), "its output or staging",
                           [&] { staging = sp::reserve_staging(lay, ws, own); });
      });
  sp::exchange(l, sp::bytes_of(x), sp::bytes_of(out), comm, staging);
}

// This rank's slice of x along dim: rows [r * unit, (r + 1) * unit) of x zero-padded at the end of dim to
// P * unit rows, unit = ceil(x.shape[dim] / P). Local: communicates nothing (comm gives the rank and size),
// so a bad dim throws on the ranks that pass it.
template <class Out = void, tensor_like In, communicator Comm>
detail::seqpar::output_t<Out, In> slice_inputs(const In& x, int dim, const Comm& comm) {
  namespace sp = detail::seqpar;
  using Result = sp::output_t<Out, In>;
  sp::require_host_tensor<In>();
  sp::require_host_tensor<Result>();
  constexpr const char* who = "redist::seqpar::slice_inputs";
  sp::check_contiguous(who, "x", x);
  const sp::shape_t shape = sp::shape_of(x);
  const std::size_t d = sp::dim_index(who, "dim", dim, shape.size());
  const std::int64_t P = comm.size();
  sp::shape_t out_shape = shape;
  out_shape[d] = (shape[d] + P - 1) / P;
  const dtype type = tensor_traits<In>::dtype(x);
  Result out = sp::allocate<Result>(type, out_shape);
  sp::slice_rows(shape, size_of(type), d, static_cast<std::size_t>(comm.rank()), static_cast<std::size_t>(P),
                 sp::bytes_of(x), sp::bytes_of(out));
  return out;
}

// Every rank's x concatenated along dim in rank order, cut to its first unpadded_size rows: the inverse of
// slice_inputs. comm.size() * x.shape[dim] must be unpadded_size rounded up to a multiple of comm.size()
// (pass comm.size() * x.shape[dim] when nothing is padded). Collective: one allreduce (agreement) and one
// exchange, received straight into the output when dim is 0 (or every dim before it has extent 1) and
// nothing is cut, else through one buffer. Throws redist::error on every rank when dim is out of range,
// unpadded_size does not fit, or the ranks' dtypes, shapes, dims or unpadded_size differ.
template <class Out = void, tensor_like In, communicator Comm>
detail::seqpar::output_t<Out, In> gather_outputs(const In& x, int dim, std::int64_t unpadded_size,
                                                 const Comm& comm) {
  namespace sp = detail::seqpar;
  using Result = sp::output_t<Out, In>;
  sp::require_host_tensor<In>();
  sp::require_host_tensor<Result>();
  constexpr const char* who = "redist::seqpar::gather_outputs";
  const sp::shape_t shape = sp::shape_of(x);
  const dtype type = tensor_traits<In>::dtype(x);
  const std::size_t elem = size_of(type);
  const std::int64_t P = comm.size();
  const auto n = static_cast<std::size_t>(P);
  std::size_t outer = 0, rows = 0, inner = 0;
  const auto keep_rows = static_cast<std::size_t>(unpadded_size);
  std::optional<Result> out;
  std::unique_ptr<std::byte[]> scratch;  // the padding rows received, dropped
  const std::string problem = detail::problem_of([&] {
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
      scratch.reset(new std::byte[outer * (rows * n - keep_rows) * inner + 1]);
    });
  });
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
  std::byte* spare = scratch.get();
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
  detail::exchange_segments(comm, std::span<const std::vector<const_segment>>(send),
                            std::span<const std::vector<segment>>(recv));
  return std::move(*out);
}

// all_to_all(x, head_dim, seq_dim): every rank's sequence, rank r's heads [r * H / P, (r + 1) * H / P).
// With unpadded_seq_len, the gathered sequence (P * x.shape[seq_dim] rows, which must be unpadded_seq_len
// rounded up to a multiple of P) is cut to its first unpadded_seq_len rows while it is unpacked. Collective:
// as all_to_all; throws redist::error on every rank when the dims are out of range or equal, the heads do not
// divide by the ranks, unpadded_seq_len does not fit, or the ranks' calls differ.
template <class Out = void, tensor_like In, communicator Comm>
detail::seqpar::output_t<Out, In> gather_seq_scatter_heads(const In& x, int seq_dim, int head_dim,
                                                           const Comm& comm,
                                                           std::optional<std::int64_t> unpadded_seq_len = {},
                                                           workspace* ws = nullptr) {
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
      ws);
}

// The way back from gather_seq_scatter_heads: the sequence is zero-padded at its end to S' = x.shape[seq_dim]
// rounded up to a multiple of P (while it is packed, no padded copy), then all_to_all(x, seq_dim, head_dim):
// rank r gets sequence rows [r * S' / P, (r + 1) * S' / P) of all P * x.shape[head_dim] heads. Collective: as
// all_to_all; throws redist::error on every rank when the dims are out of range or equal, or the ranks'
// calls differ.
template <class Out = void, tensor_like In, communicator Comm>
detail::seqpar::output_t<Out, In> gather_heads_scatter_seq(const In& x, int head_dim, int seq_dim,
                                                           const Comm& comm, workspace* ws = nullptr) {
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
      ws);
}

// The fused-projection form: qkv's last dim is [q | k | v], 3 * D wide. It is viewed as [.., 3, D]; D is
// scattered (D / P must be whole) and seq_dim gathered, so rank r gets columns [r * D / P, (r + 1) * D / P)
// of each of q, k and v, fused again: output last dim 3 * D / P = [q_r | k_r | v_r], seq_dim P * its extent
// (cut to unpadded_seq_len when given, as in gather_seq_scatter_heads). seq_dim must not be the last dim.
// Collective: as all_to_all.
template <class Out = void, tensor_like In, communicator Comm>
detail::seqpar::output_t<Out, In> gather_seq_scatter_heads_qkv(
    const In& qkv, int seq_dim, const Comm& comm, std::optional<std::int64_t> unpadded_seq_len = {},
    workspace* ws = nullptr) {
  namespace sp = detail::seqpar;
  using Result = sp::output_t<Out, In>;
  sp::require_host_tensor<In>();
  sp::require_host_tensor<Result>();
  constexpr const char* who = "redist::seqpar::gather_seq_scatter_heads_qkv";
  const sp::shape_t shape = sp::shape_of(qkv);
  const dtype type = tensor_traits<In>::dtype(qkv);
  const std::int64_t P = comm.size();
  sp::a2a_layout l;
  std::optional<Result> out;
  std::unique_ptr<std::byte[]> own;
  std::byte* staging = nullptr;
  const std::string problem = detail::problem_of([&] {
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
  detail::agree(comm, who, problem,
                sp::describe_x(who, type, shape,
                               detail::call_description()
                                   .add("seq_dim", sp::normalized(seq_dim, shape.size()))
                                   .add("unpadded_seq_len", sp::optional_text(unpadded_seq_len))));
  sp::exchange(l, sp::bytes_of(qkv), sp::bytes_of(*out), comm, staging);
  return std::move(*out);
}

// Each rank in turn broadcasts its own tree of tensors `mine` (structure, names, dtypes and shapes may differ
// by rank; an empty tree is fine), and use(k, tree) is called for k = 0 .. P - 1 in order with rank k's tree:
// `mine` itself on rank k, a received copy elsewhere (valid during the call only; copy what must outlive it).
//
// Cost: one allreduce (agreement), one allgatherv of the schemas (encode_schema), then per rank with any
// bytes one comm.ibroadcast of its tensors as one buffer: a single tensor is sent from and received into the
// tensor itself, several are packed into (and unpacked from) one of two buffers that alternate. Step k + 1's
// broadcast is started before use(k) runs, so its transfer overlaps the use of step k's data where the
// transport moves data by itself (an MPI without a progress thread may move a large message only inside
// MPI calls, that is at the next step's wait).
//
// If use throws on a rank, that rank still takes part in every remaining broadcast (calling use no more) and
// then rethrows, so the other ranks do not hang. A rank that cannot allocate a received tree (std::bad_alloc)
// is not recovered: the others would wait for it in the broadcast. Collective; throws redist::error (on every
// rank, before any byte moves) when a tensor of any rank's `mine` is not contiguous or its size overflows.
template <allocatable_tensor Tensor, communicator Comm, std::invocable<int, const nested<Tensor>&> Use>
void rotating_broadcast(const Comm& comm, const nested<Tensor>& mine, Use&& use) {
  namespace sp = detail::seqpar;
  sp::require_host_tensor<Tensor>();
  constexpr const char* who = "redist::seqpar::rotating_broadcast";
  using traits = tensor_traits<Tensor>;
  const auto tensor_bytes = [&](const Tensor& t) {
    return detail::dense_bytes(traits::dtype(t), sp::shape_of(t), who);
  };
  const std::string problem = detail::problem_of([&] {
    std::size_t total = 0;
    mine.for_each_tensor([&](const Tensor& t) {
      sp::check_contiguous(who, "a tensor of the inputs", t);
      if (!detail::checked_add(total, tensor_bytes(t), total))
        detail::fail(who, ": the inputs' size overflows");
    });
  });
  detail::agree(comm, who, problem, detail::call_description().add("op", who));
  const std::vector<std::byte> my_schema = encode_schema(mine);
  std::vector<std::size_t> counts;
  const std::vector<std::byte> schemas = comm.allgatherv(my_schema, &counts);
  std::vector<std::size_t> offsets(counts.size() + 1, 0);
  for (std::size_t r = 0; r < counts.size(); ++r) offsets[r + 1] = offsets[r] + counts[r];

  const int P = comm.size();
  const int me = comm.rank();
  // One step: rank k's tree (received ranks only), where its bytes travel, and the broadcast in flight.
  struct step {
    nested<Tensor> tree;
    std::size_t bytes = 0;
    std::size_t tensors = 0;
    std::optional<typename Comm::request> transfer;
  };
  std::vector<std::byte> buffers[2];  // step k packs into / receives into buffers[k % 2] (several tensors)
  step slots[2];

  const auto start = [&](int k) {
    step& s = slots[k % 2];
    std::vector<std::byte>& buffer = buffers[k % 2];
    s = step{};
    std::byte* landing = nullptr;
    if (k == me) {
      mine.for_each_tensor([&](const Tensor& t) {
        s.bytes += tensor_bytes(t);
        ++s.tensors;
        // The root's buffer is only read by a broadcast: a lone tensor is sent from where it is.
        landing = const_cast<std::byte*>(sp::bytes_of(t));
      });
      if (s.tensors > 1) {
        buffer.resize(s.bytes);
        std::byte* at = buffer.data();
        mine.for_each_tensor([&](const Tensor& t) {
          const std::size_t n = tensor_bytes(t);
          sp::copy(sp::bytes_of(t), n, at);
          at += n;
        });
        landing = buffer.data();
      }
    } else {
      const auto r = static_cast<std::size_t>(k);
      s.tree = decode_schema<Tensor>(std::span(schemas).subspan(offsets[r], counts[r]));
      s.tree.for_each_tensor([&](Tensor& t) {
        s.bytes += tensor_bytes(t);
        ++s.tensors;
        landing = sp::bytes_of(t);
      });
      if (s.tensors > 1) {
        buffer.resize(s.bytes);
        landing = buffer.data();
      }
    }
    if (s.bytes != 0) s.transfer.emplace(comm.ibroadcast(std::span(landing, s.bytes), k));
  };
  const auto unpack = [&](int k) {
    step& s = slots[k % 2];
    if (k == me || s.tensors < 2) return;
    const std::byte* at = buffers[k % 2].data();
    s.tree.for_each_tensor([&](Tensor& t) {
      const std::size_t n = tensor_bytes(t);
      sp::copy(at, n, sp::bytes_of(t));
      at += n;
    });
  };

  std::exception_ptr failed;
  start(0);
  for (int k = 0; k < P; ++k) {
    step& s = slots[k % 2];
    if (s.transfer) s.transfer->wait();
    if (k + 1 < P) start(k + 1);  // before step k's data is unpacked and used: the overlap
    unpack(k);
    if (!failed) {
      try {
        use(k, k == me ? mine : std::as_const(s.tree));
      } catch (...) {
        failed = std::current_exception();
      }
    }
    s.tree = nested<Tensor>{};  // a received tree lives for its step only
  }
  if (failed) std::rethrow_exception(failed);
}

}  // namespace redist::seqpar
