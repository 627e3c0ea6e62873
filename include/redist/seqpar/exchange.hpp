// seqpar's exchange: the agreement on a call (the op, x's dtype and shape, its dims), the output and staging
// allocated before it, and the one comm.alltoall of equal blocks, packed and unpacked by the layout in the
// tensors' memory space.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/comm/communicator.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/debug.hpp"
#include "redist/detail/text.hpp"
#include "redist/seqpar/layout.hpp"
#include "redist/staging/copy_list.hpp"
#include "redist/staging/space_call.hpp"
#include "redist/staging/workspace.hpp"

namespace redist::detail::seqpar {

// One comm.alltoall of equal blocks, from x itself or a packed buffer, into the output itself or a buffer
// unpacked afterwards (each one table of `space`); staging holds staging_bytes(l) bytes (see
// reserve_staging).
template <class Comm, class Space>
void exchange_blocks(const a2a_layout& l, const std::byte* x, std::byte* out, const Comm& comm,
                     std::byte* staging, const Space& space) {
  if (l.block == 0) return;  // every rank agreed on the shape: every rank skips
  const std::size_t total = l.block * l.ranks;
  std::byte* buffer = staging;
  const std::byte* send = x;
  phase_copies<Space> copies;
  if (!l.send_in_place) {
    pack(l, x, buffer, copies);
    copies.run(space);
    send = buffer;
    buffer += total;
  }
  std::byte* recv = l.recv_in_place ? out : buffer;
  comm.alltoall(std::span(send, total), std::span(recv, total), l.block);
  if (l.recv_in_place) return;
  unpack(l, recv, out, copies);
  copies.run(space);
}

// REDIST_DEBUG's line for one exchange of `who` (detail/debug.hpp).
inline void report_exchange(const char* who, const a2a_layout& l, int rank, int size,
                            const debug_op_timer& timer) {
  const std::uint64_t peers = l.ranks - 1, moved = peers * l.block;
  debug_print(
      rank, size, who, ": x ", shape_text(l.in), " -> out ", shape_text(l.out), ", block ",
      debug_bytes(l.block), l.send_in_place ? ", sent from x" : ", packed",
      l.recv_in_place ? ", received in place" : ", unpacked", ": ", timer.figures(moved, moved),
      debug_traces() ? str("; to and from each of ", peers, " peers: ", l.block, " B") : std::string());
}

// exchange_blocks, reported under REDIST_DEBUG.
template <class Comm, class Space>
void exchange(const char* who, const a2a_layout& l, const std::byte* x, std::byte* out, const Comm& comm,
              std::byte* staging, const Space& space) {
  if (!debug_prints(comm.rank())) [[likely]]
    return exchange_blocks(l, x, out, comm, staging, space);
  const debug_op_timer timer;
  exchange_blocks(l, x, out, comm, staging, space);
  report_exchange(who, l, comm.rank(), comm.size(), timer);
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
// (which throws on a bad output tensor), and agrees on the call, the space's stream check included: extra
// describes the arguments beyond x.
template <class In, class Comm, class Space, class Make, class Check>
a2a_layout agreed_layout(const char* who, const In& x, const Comm& comm, const Space& space,
                         const call_description& extra, Make make, Check check) {
  const shape_t shape = shape_of(x);
  const dtype type = tensor_traits<In>::dtype(x);
  a2a_layout l;
  std::string problem = detail::problem_of([&] {
    check_contiguous(who, "x", x);
    l = make(shape, size_of(type));
    check(l);
  });
  if (problem.empty()) problem = space_problem(who, comm, space);
  agree(comm, who, problem, describe_x(who, type, shape, extra));
  return l;
}

// The all-to-all behind the public exchanges that return a new tensor.
template <class Out, class In, class Comm, class Space, class Make>
Out run_exchange(const char* who, const In& x, const Comm& comm, const call_description& extra, Make make,
                 workspace_for<Space>* ws, const Space& space) {
  require_tensors<In, Out, Space>();
  [[maybe_unused]] const auto scope = allocation_scope(space);
  std::optional<Out> out;
  own_staging<Space> own(space);
  std::byte* staging = nullptr;
  const a2a_layout l = agreed_layout(who, x, comm, space, extra, make, [&](const a2a_layout& lay) {
    detail::allocating(who, comm.rank(), "its output or staging", [&] {
      out.emplace(allocate<Out>(tensor_traits<In>::dtype(x), lay.out));
      staging = reserve_staging(lay, ws, own);
    });
  });
  exchange(who, l, bytes_of(x), bytes_of(*out), comm, staging, space);
  return std::move(*out);
}

// Throws when x's n bytes at a and out's m bytes at b overlap: the exchange reads x while it writes out.
inline void check_apart(const char* who, const std::byte* a, std::size_t n, const std::byte* b,
                        std::size_t m) {
  if (n != 0 && m != 0 && std::less<>{}(a, b + m) && std::less<>{}(b, a + n))
    fail(who, ": out overlaps x; the exchange reads x while it writes out");
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
  check_apart(who, bytes_of(x), dense_bytes(tensor_traits<In>::dtype(x), shape_of(x), who), bytes_of(out),
              dense_bytes(tensor_traits<Out>::dtype(out), shape, who));
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
