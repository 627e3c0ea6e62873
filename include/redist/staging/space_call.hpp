// The memory space an op's call runs in: device tensors name the space of the stream the call is ordered on,
// the tensors the call makes are allocated on that stream, and a space on another stream than the
// communicator's is the calling rank's problem, agreed like any other.
#pragma once

#include <string>
#include <type_traits>

#include "redist/core/memory_space.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/text.hpp"

namespace redist::detail {

// Host tensors need no space argument (host_space, the default); device tensors pass theirs last.
template <class Tensor, class Space>
constexpr void require_space() {
  static_assert(std::is_same_v<Space, space_of<Tensor>>,
                "redist: device tensors need the memory space of the stream the call is ordered on: pass a "
                "redist::cuda_space (redist/core/cuda/space.cuh) as the last argument");
}

// While the call runs, the tensors it makes are allocated on the space's stream, where it has one.
struct no_allocation_scope {};
template <class Space>
auto allocation_scope(const Space& space) {
  if constexpr (requires { space.allocation_scope(); })
    return space.allocation_scope();
  else
    return no_allocation_scope{};
}

// A problem of this rank's call that its memory space sees: the space's stream must be the communicator's
// when both have one, or the transfers would not be ordered after the packing.
template <class Comm, class Space>
std::string space_problem(const char* who, const Comm& comm, const Space& space) {
  if constexpr (requires { comm.stream() == space.stream(); }) {
    if (comm.stream() != space.stream())
      return str(who, ": rank ", comm.rank(),
                 " passes a memory space on another stream than its communicator's");
  }
  return {};
}

}  // namespace redist::detail
