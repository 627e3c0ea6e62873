// redist::seqpar::rotating_broadcast: each rank in turn broadcasts its own tree of tensors, received into one
// of two alternating buffers while the previous rank's tree is in use.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/comm/communicator.hpp"
#include "redist/core/error.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"
#include "redist/seqpar/layout.hpp"
#include "redist/staging/buffer.hpp"
#include "redist/staging/space_call.hpp"

namespace redist::seqpar {

// Each rank in turn broadcasts its own tree of tensors `mine` (structure, names, dtypes and shapes may differ
// by rank; an empty tree is fine), and use(k, tree) is called for k = 0 .. P - 1 in order with rank k's tree:
// `mine` itself on rank k, a received copy elsewhere (valid during the call only; copy what must outlive it).
//
// Cost: one allgather (agreement, with the schemas' sizes), one allgatherv of the schemas (encode_schema),
// then per rank with any bytes one comm.ibroadcast of its tensors as one buffer: a single tensor is sent from
// and received into the tensor itself, several are packed into (and unpacked from) one of two buffers that
// alternate, one table each. Step k + 1's broadcast is started before use(k) runs, so its transfer overlaps
// the use of step k's data where the transport moves data by itself (an MPI without a progress thread may
// move a large message only inside MPI calls, that is at the next step's wait).
//
// Device tensors: transfers, packing and received trees are ordered on `space`'s stream (the communicator's);
// use(k) queues its work on `use_space`'s stream, which waits (on the device) for step k's data, while
// `space`'s stream waits for use(k)'s work before it frees step k's tree or reuses its buffer for step k + 2:
// with two streams, step k + 1's broadcast runs beside use(k)'s kernels. `mine` must be ready on
// `use_space`'s stream (the call orders its stream after it first).
//
// If use throws on a rank, that rank still takes part in every remaining broadcast (calling use no more) and
// then rethrows, so the other ranks do not hang. A rank that cannot allocate a received tree (std::bad_alloc)
// is not recovered: the others would wait for it in the broadcast. Collective; throws redist::error (on every
// rank, before any byte moves) when a tensor of any rank's `mine` is not contiguous or its size overflows,
// or a rank's space is on another stream than its communicator.
template <allocatable_tensor Tensor, communicator Comm, std::invocable<int, const nested<Tensor>&> Use,
          class Space>
void rotating_broadcast(const Comm& comm, const nested<Tensor>& mine, Use&& use, const Space& space,
                        const Space& use_space) {
  namespace sp = detail::seqpar;
  sp::require_tensors<Tensor, Tensor, Space>();
  [[maybe_unused]] const auto scope = detail::allocation_scope(space);
  constexpr const char* who = "redist::seqpar::rotating_broadcast";
  using traits = tensor_traits<Tensor>;
  const auto tensor_bytes = [&](const Tensor& t) {
    return detail::dense_bytes(traits::dtype(t), sp::shape_of(t), who);
  };
  std::vector<std::byte> my_schema;
  std::string problem = detail::problem_of([&] {
    std::size_t total = 0;
    mine.for_each_tensor([&](const Tensor& t) {
      sp::check_contiguous(who, "a tensor of the inputs", t);
      if (!detail::checked_add(total, tensor_bytes(t), total))
        detail::fail(who, ": the inputs' size overflows");
    });
    my_schema = encode_schema(mine);
  });
  if (problem.empty()) problem = detail::space_problem(who, comm, space);
  const std::vector<std::uint64_t> counts =
      detail::agree(comm, who, problem, detail::call_description().add("op", who), my_schema.size());
  const std::vector<std::byte> schemas = comm.allgatherv(my_schema, std::span<const std::uint64_t>(counts));
  std::vector<std::size_t> offsets(counts.size() + 1, 0);
  for (std::size_t r = 0; r < counts.size(); ++r) offsets[r + 1] = offsets[r] + counts[r];

  // The streams' order on a device (nothing on the host): `later` waits for what `first` has queued.
  const auto order = [](const Space& later, const Space& first) {
    if constexpr (requires { later.after(first); }) later.after(first);
  };
  const int P = comm.size();
  const int me = comm.rank();
  // One step: rank k's tree (received ranks only), where its bytes travel, and the broadcast in flight.
  struct step {
    nested<Tensor> tree;
    std::size_t bytes = 0;
    std::vector<segment> pieces;  // a received tree's tensors, unpacked from the buffer when several
    std::optional<typename Comm::request> transfer;
  };
  // Step k packs into / receives into buffers[k % 2] (several tensors).
  detail::space_buffer<Space> buffers[2] = {detail::space_buffer<Space>(space),
                                            detail::space_buffer<Space>(space)};
  step slots[2];

  const auto start = [&](int k) {
    step& s = slots[k % 2];
    s = step{};
    std::byte* landing = nullptr;
    if (k == me) {
      std::vector<const_segment> sources;
      mine.for_each_tensor([&](const Tensor& t) {
        s.bytes += tensor_bytes(t);
        if (tensor_bytes(t) != 0) sources.push_back({sp::bytes_of(t), tensor_bytes(t)});
      });
      // The root's buffer is only read by a broadcast: a lone tensor is sent from where it is.
      if (sources.size() == 1) landing = const_cast<std::byte*>(sources.front().data);
      if (sources.size() > 1) {
        landing = buffers[k % 2].resize(s.bytes).data();
        space.gather(sources, landing);
      }
    } else {
      const auto r = static_cast<std::size_t>(k);
      s.tree = decode_schema<Tensor>(std::span(schemas).subspan(offsets[r], counts[r]));
      s.tree.for_each_tensor([&](Tensor& t) {
        s.bytes += tensor_bytes(t);
        if (tensor_bytes(t) != 0) s.pieces.push_back({sp::bytes_of(t), tensor_bytes(t)});
      });
      if (s.pieces.size() == 1) landing = s.pieces.front().data;
      if (s.pieces.size() > 1) landing = buffers[k % 2].resize(s.bytes).data();
    }
    if (s.bytes != 0) s.transfer.emplace(comm.ibroadcast(std::span(landing, s.bytes), k));
  };

  std::exception_ptr failed;
  order(space, use_space);
  start(0);
  for (int k = 0; k < P; ++k) {
    step& s = slots[k % 2];
    if (s.transfer) s.transfer->wait();
    if (k + 1 < P) start(k + 1);  // before step k's data is unpacked and used: the overlap
    if (k != me && s.pieces.size() > 1) space.scatter(buffers[k % 2].data(), s.pieces);
    order(use_space, space);
    if (!failed) {
      try {
        use(k, k == me ? mine : std::as_const(s.tree));
      } catch (...) {
        failed = std::current_exception();
      }
    }
    order(space, use_space);    // before step k's tree goes and its buffer takes step k + 2
    s.tree = nested<Tensor>{};  // a received tree lives for its step only
  }
  if (failed) std::rethrow_exception(failed);
}

// The form with one stream (host tensors need none): use(k)'s work is ordered on the call's own stream.
template <allocatable_tensor Tensor, communicator Comm, std::invocable<int, const nested<Tensor>&> Use,
          class Space = host_space>
void rotating_broadcast(const Comm& comm, const nested<Tensor>& mine, Use&& use, const Space& space = {}) {
  rotating_broadcast(comm, mine, std::forward<Use>(use), space, space);
}

}  // namespace redist::seqpar
