// redist::seqpar::prepared_all_to_all: an all_to_all's layout agreed once, for the loops that repeat one
// exchange (every layer of a model): each call then checks its tensors on its own rank and moves the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "redist/comm/communicator.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/seqpar/exchange.hpp"
#include "redist/seqpar/layout.hpp"
#include "redist/staging/space_call.hpp"
#include "redist/staging/workspace.hpp"

namespace redist {
namespace detail::seqpar {
struct preparer;
}

namespace seqpar {

// What prepare_all_to_all agreed: the exchange of tensors of one dtype and shape with two dims, on a
// communicator of ranks() ranks, as rank rank(). Copyable; made only by prepare_all_to_all.
class prepared_all_to_all {
 public:
  dtype type() const noexcept { return type_; }
  std::span<const std::int64_t> in_shape() const noexcept { return layout_.in; }
  std::span<const std::int64_t> out_shape() const noexcept { return layout_.out; }
  int ranks() const noexcept { return static_cast<int>(layout_.ranks); }
  int rank() const noexcept { return rank_; }
  const detail::seqpar::a2a_layout& layout() const noexcept { return layout_; }

 private:
  friend struct detail::seqpar::preparer;
  prepared_all_to_all(dtype type, detail::seqpar::a2a_layout layout, int rank)
      : type_(type), layout_(std::move(layout)), rank_(rank) {}

  dtype type_;
  detail::seqpar::a2a_layout layout_;
  int rank_;
};

}  // namespace seqpar

namespace detail::seqpar {

struct preparer {
  static redist::seqpar::prepared_all_to_all make(dtype type, a2a_layout layout, int rank) {
    return {type, std::move(layout), rank};
  }
};

// Throws unless t has the prepared dtype and shape and is contiguous; allocates nothing.
template <class T>
void check_prepared(const char* who, const char* what, const T& t, dtype type,
                    std::span<const std::int64_t> shape) {
  using traits = tensor_traits<T>;
  bool same = traits::dtype(t) == type && traits::rank(t) == shape.size();
  for (std::size_t d = 0; same && d < shape.size(); ++d)
    same = static_cast<std::int64_t>(traits::extent(t, d)) == shape[d];
  if (!same)
    fail(who, ": ", what, " is ", name(traits::dtype(t)), ' ', shape_text(shape_of(t)),
         " where the prepared exchange takes ", name(type), ' ', shape_text(shape));
  check_contiguous(who, what, t);
}

}  // namespace detail::seqpar

namespace seqpar {

// Collective, like all_to_all(comm, x, scatter_dim, gather_dim), and agreed the same way (one allgather):
// the exchange of tensors of x's dtype and shape with these dims, on comm. Throws what all_to_all throws for
// bad dims or ranks that differ; moves no tensor bytes (x only shows the dtype and shape).
template <tensor_like In, communicator Comm, class Space = host_space>
prepared_all_to_all prepare_all_to_all(const Comm& comm, const In& x, int scatter_dim, int gather_dim,
                                       const Space& space = {}) {
  namespace sp = detail::seqpar;
  constexpr const char* who = "redist::seqpar::prepare_all_to_all";
  sp::a2a_layout l = sp::agreed_layout(who, x, comm, space, sp::all_to_all_args(x, scatter_dim, gather_dim),
                                       sp::all_to_all_layout(who, scatter_dim, gather_dim, comm.size()),
                                       [](const sp::a2a_layout&) {});
  return sp::preparer::make(tensor_traits<In>::dtype(x), std::move(l), comm.rank());
}

// all_to_all_into with a prepared exchange: no agreement, and with `ws` nothing allocated: one comm.alltoall
// and the layout's packing. Collective over the comm it was prepared on. x must have the prepared dtype and
// shape, out the result's, both contiguous and apart; a rank whose tensors do not match throws before any
// byte moves, but alone (the agreement was made once, when prepared): the other ranks would wait in the
// exchange, as for a collective called out of order. Every rank must pass tensors that match.
template <tensor_like In, tensor_like Out, communicator Comm, class Space = host_space>
void all_to_all_into(const Comm& comm, const prepared_all_to_all& prepared, const In& x, Out& out,
                     workspace_for<Space>* ws = nullptr, const Space& space = {}) {
  namespace sp = detail::seqpar;
  sp::require_tensors<In, Out, Space>();
  constexpr const char* who = "redist::seqpar::all_to_all_into";
  const sp::a2a_layout& l = prepared.layout();
  if (comm.size() != prepared.ranks() || comm.rank() != prepared.rank())
    detail::fail(who, ": prepared for a communicator of ", prepared.ranks(), " ranks (as rank ",
                 prepared.rank(), "), called on one of ", comm.size(), " (as rank ", comm.rank(), ')');
  sp::check_prepared(who, "x", x, prepared.type(), l.in);
  sp::check_prepared(who, "out", out, prepared.type(), l.out);
  const std::size_t n = l.block * l.ranks;  // x and out are n bytes each: every layout sends all of x
  sp::check_apart(who, sp::bytes_of(x), n, sp::bytes_of(out), n);
  if (const auto problem = detail::space_problem(who, comm, space); !problem.empty()) throw error(problem);
  sp::own_staging<Space> own(space);
  sp::exchange(who, l, sp::bytes_of(x), sp::bytes_of(out), comm, sp::reserve_staging(l, ws, own), space);
}

}  // namespace seqpar

}  // namespace redist
