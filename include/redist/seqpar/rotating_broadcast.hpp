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
#include <vector>

#include "redist/comm/agree.hpp"
#include "redist/comm/communicator.hpp"
#include "redist/core/error.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"
#include "redist/seqpar/layout.hpp"

namespace redist::seqpar {

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
