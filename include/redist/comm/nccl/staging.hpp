// The NCCL backend's rule for host memory: NCCL moves device memory only, so every buffer handed to an
// nccl_communicator that lives in host memory is staged through device scratch the communicator keeps.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "redist/comm/nccl/core.hpp"
#include "redist/core/memory_space.hpp"

namespace redist::detail {

// Whether NCCL can use p directly: device or managed memory. Host memory, pageable or pinned, is staged.
inline bool nccl_can_use(const void* p) noexcept {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    static_cast<void>(cudaGetLastError());  // an unknown pointer is host memory; clear the error it left
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

// A copy the CPU makes once a request has completed: from the pinned mirror into the caller's host memory.
struct nccl_host_copy {
  std::byte* to;
  const std::byte* from;
  std::size_t bytes;
};

// The memory one operation hands to NCCL. Buffers are registered first (read(): NCCL reads it; write(): NCCL
// writes one message into it, or spread over several pieces), then stage_in() leases scratch and copies what
// NCCL reads from host memory to the device, read_ptr()/write_ptr() give the pointers for the NCCL calls, and
// stage_out(), once they are enqueued, copies what NCCL wrote to host memory back to the pinned mirror (and
// device pieces of a spread message into place), leaving CPU copies for the request to make on completion.
// A device buffer of one piece goes to NCCL as it is: no copy.
class nccl_staging {
 public:
  std::size_t read(std::span<const std::byte> buf) {
    const bool staged = !buf.empty() && !nccl_can_use(buf.data());
    if (staged) {  // the same host buffer sent to several peers is staged once
      const auto [it, fresh] = staged_reads_.try_emplace({buf.data(), buf.size()}, reads_.size());
      if (!fresh) return it->second;
    }
    reads_.push_back({buf.data(), buf.size(), 0, staged});
    return reads_.size() - 1;
  }

  std::size_t write(std::span<std::byte> buf) {
    const segment whole{buf.data(), buf.size()};
    return write(std::span(&whole, 1));
  }

  std::size_t write(std::span<const segment> pieces) {
    write_t w{nullptr, 0, 0, pieces_.size(), 0, false};
    for (const segment& s : pieces) {
      if (s.bytes == 0) continue;
      const bool host = !nccl_can_use(s.data);
      pieces_.push_back({s.data, s.bytes, host});
      w.host = w.host || host;
      w.bytes += s.bytes;
      ++w.count;
    }
    if (w.count == 1 && !w.host) w.direct = pieces_[w.first].data;
    writes_.push_back(w);
    return writes_.size() - 1;
  }

  // Leases scratch for everything staged and copies the staged reads to it: host to pinned by the CPU, then
  // one cudaMemcpyAsync to the device on `stream`.
  void stage_in(const char* op, nccl_scratch_cache& cache, cudaStream_t stream) {
    std::size_t at = 0;
    for (read_t& r : reads_) {
      if (r.staged) r.at = std::exchange(at, at + aligned(r.bytes));
    }
    const std::size_t read_bytes = at;
    for (write_t& w : writes_) {
      if (w.direct == nullptr && w.bytes != 0) w.at = std::exchange(at, at + aligned(w.bytes));
    }
    if (at == 0) return;
    lease_ = cache.lease(op, at, stream);
    for (const read_t& r : reads_) {
      if (r.staged) host_space::copy(lease_->pinned() + r.at, r.data, r.bytes);
    }
    if (read_bytes != 0) {
      cuda_device_guard::check(
          op, cudaMemcpyAsync(lease_->device(), lease_->pinned(), read_bytes, cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync");
    }
  }

  const void* read_ptr(std::size_t handle) const noexcept {
    const read_t& r = reads_[handle];
    return r.staged ? lease_->device() + r.at : r.data;
  }

  void* write_ptr(std::size_t handle) const noexcept {
    const write_t& w = writes_[handle];
    if (w.direct != nullptr || w.bytes == 0) return w.direct;
    return lease_->device() + w.at;
  }

  // After the NCCL calls are enqueued: the copies out of scratch, on `stream`; `host` receives the CPU copies
  // left for completion. The first failing call's error, or cudaSuccess.
  cudaError_t stage_out(cudaStream_t stream, std::vector<nccl_host_copy>& host) const {
    for (const write_t& w : writes_) {
      if (w.direct != nullptr || w.bytes == 0) continue;
      std::byte* const device = lease_->device() + w.at;
      std::byte* const pinned = lease_->pinned() + w.at;
      if (w.host) {
        const cudaError_t rc = cudaMemcpyAsync(pinned, device, w.bytes, cudaMemcpyDeviceToHost, stream);
        if (rc != cudaSuccess) return rc;
      }
      std::size_t offset = 0;
      for (std::size_t k = w.first; k < w.first + w.count; ++k) {
        const piece_t& p = pieces_[k];
        if (p.host) {
          host.push_back({p.data, pinned + offset, p.bytes});
        } else {
          const cudaError_t rc =
              cudaMemcpyAsync(p.data, device + offset, p.bytes, cudaMemcpyDeviceToDevice, stream);
          if (rc != cudaSuccess) return rc;
        }
        offset += p.bytes;
      }
    }
    return cudaSuccess;
  }

  // The scratch the staged buffers use, held by the request until it completes.
  std::shared_ptr<nccl_scratch> lease() && noexcept { return std::move(lease_); }

 private:
  static std::size_t aligned(std::size_t bytes) noexcept { return (bytes + 255) / 256 * 256; }

  struct read_t {
    const std::byte* data;
    std::size_t bytes;
    std::size_t at;  // in scratch, when staged
    bool staged;
  };
  struct piece_t {
    std::byte* data;
    std::size_t bytes;
    bool host;
  };
  struct write_t {
    std::byte* direct;  // NCCL writes here: one device piece
    std::size_t bytes;
    std::size_t at;  // in scratch, unless direct
    std::size_t first;
    std::size_t count;  // pieces_[first, first + count)
    bool host;          // some piece lives in host memory
  };

  std::vector<read_t> reads_;
  std::vector<write_t> writes_;
  std::vector<piece_t> pieces_;
  std::map<std::pair<const std::byte*, std::size_t>, std::size_t> staged_reads_;
  std::shared_ptr<nccl_scratch> lease_;
};

// The memory space redist::grouped copies a rank's own block with: cudaMemcpyAsync on the stream, ordered
// before the group it belongs to; host to host by host_space at once (the stream never touches host memory).
// A copy between host and device memory may block the CPU until the stream reaches it (pageable memory):
// the library's own collectives never mix the two.
struct nccl_stream_copy {
  const char* op;
  cudaStream_t stream;
  int device;

  void copy(std::byte* to, const std::byte* from, std::size_t n) const {
    if (n == 0) return;
    if (!nccl_can_use(to) && !nccl_can_use(from)) {
      host_space::copy(to, from, n);
      return;
    }
    const cuda_device_guard guard(op, device);
    cuda_device_guard::check(op, cudaMemcpyAsync(to, from, n, cudaMemcpyDefault, stream), "cudaMemcpyAsync");
  }
};

}  // namespace redist::detail
