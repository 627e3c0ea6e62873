// redist::cuda_space, the CUDA memory space: every byte copy the library makes in device memory, ordered on
// one stream. Copies and fills are cudaMemcpyAsync / cudaMemsetAsync; gathers, scatters, cross copies and
// the float32 casts of many pieces are one piece table and one kernel launch, never a launch or a copy per
// piece. Nothing here synchronizes the device, and only to_host() (a result the host reads) waits for the
// stream; otherwise the host waits, at most, for its own upload of the table before last to finish before it
// overwrites that pinned buffer.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "redist/core/cuda/kernels.cuh"
#include "redist/core/cuda/runtime.hpp"
#include "redist/core/cuda/tensor.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/piece_table.hpp"

namespace redist {

namespace detail {

// Where a stream's piece tables go on their way to the kernels: built on the host in one of two pinned
// buffers (used in turn, each guarded by an event that marks the end of its last upload), uploaded on the
// stream into one device buffer, which stream order protects until the kernel that reads it is done.
class table_uploads {
 public:
  explicit table_uploads(cudaStream_t stream) : stream_(stream) {}
  table_uploads(const table_uploads&) = delete;
  table_uploads& operator=(const table_uploads&) = delete;
  ~table_uploads() {
    for (auto& s : slots_) {
      if (s.host == nullptr) continue;
      cudaEventSynchronize(s.uploaded.native());  // this buffer's own last upload, nothing else
      cudaFreeHost(s.host);
    }
    if (device_ != nullptr) cudaFreeAsync(device_, stream_);
  }

  // Uploads the pieces and their tile prefix; returns where they are on the device.
  template <class Piece>
  std::pair<const Piece*, const std::size_t*> upload(std::span<const Piece> pieces,
                                                     std::span<const std::size_t> prefix) {
    const std::size_t piece_bytes = (pieces.size_bytes() + 15) / 16 * 16;
    const std::size_t bytes = piece_bytes + prefix.size_bytes();
    slot& s = slots_[next_];
    next_ = (next_ + 1) % slots_.size();
    if (s.host != nullptr && !s.uploaded.done())
      cuda_check(cudaEventSynchronize(s.uploaded.native()), "cudaEventSynchronize");
    if (s.capacity < bytes) {
      if (s.host != nullptr) cuda_check(cudaFreeHost(s.host), "cudaFreeHost");
      s.host = nullptr;
      s.capacity = std::max(bytes, 2 * s.capacity);
      cuda_check(cudaMallocHost(&s.host, s.capacity), "cudaMallocHost");
    }
    if (device_capacity_ < bytes) {
      if (device_ != nullptr) cuda_check(cudaFreeAsync(device_, stream_), "cudaFreeAsync");
      device_ = nullptr;
      device_capacity_ = std::max(bytes, 2 * device_capacity_);
      cuda_check(cudaMallocAsync(&device_, device_capacity_, stream_), "cudaMallocAsync");
    }
    auto* host = static_cast<std::byte*>(s.host);
    std::copy(pieces.begin(), pieces.end(), reinterpret_cast<Piece*>(host));
    std::copy(prefix.begin(), prefix.end(), reinterpret_cast<std::size_t*>(host + piece_bytes));
    cuda_check(cudaMemcpyAsync(device_, host, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
    s.uploaded.record(stream_);
    auto* dev = static_cast<std::byte*>(device_);
    return {reinterpret_cast<const Piece*>(dev), reinterpret_cast<const std::size_t*>(dev + piece_bytes)};
  }

 private:
  struct slot {
    void* host = nullptr;
    std::size_t capacity = 0;
    cuda_event uploaded;
  };
  cudaStream_t stream_;
  std::array<slot, 2> slots_;
  std::size_t next_ = 0;
  void* device_ = nullptr;
  std::size_t device_capacity_ = 0;
};

}  // namespace detail

// The device memory space of one stream. A handle: copies share the stream's table buffers, so keep one per
// stream for as long as the stream is used (making one allocates its pinned and device buffers on first use,
// and dropping the last copy frees them). Every member queues work on the stream and returns.
class cuda_space {
 public:
  static constexpr memory_space space = memory_space::device;

  explicit cuda_space(cudaStream_t stream) : stream_(stream), state_(std::make_shared<state>(stream)) {}

  cudaStream_t stream() const noexcept { return stream_; }
  // Kernel launches so far, over every copy of this handle: what the tests count.
  std::size_t launches() const noexcept { return state_->launches; }

  // Any pointers the CUDA runtime knows (device, pinned or pageable host): cudaMemcpyDefault.
  void copy(std::byte* to, const std::byte* from, std::size_t n) const {
    if (n != 0)
      detail::cuda_check(cudaMemcpyAsync(to, from, n, cudaMemcpyDefault, stream_), "cudaMemcpyAsync");
  }
  void fill(std::byte* to, std::size_t n, std::byte value = std::byte{0}) const {
    if (n != 0)
      detail::cuda_check(cudaMemsetAsync(to, static_cast<int>(value), n, stream_), "cudaMemsetAsync");
  }
  // Device memory into host memory, complete on return: the copy, then a wait for this stream alone (what
  // the host reads of a result; the stream's earlier work comes first).
  void to_host(std::byte* to, const std::byte* from, std::size_t n) const {
    if (n == 0) return;
    copy(to, from, n);
    detail::cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }
  // Host memory into device memory, ordered on the stream. `from` may be reused on return: pageable memory
  // is staged by the runtime before cudaMemcpyAsync returns; pinned memory is read by the copy itself, so
  // pass pinned memory only where it stays untouched until the stream has passed the copy.
  void from_host(std::byte* to, const std::byte* from, std::size_t n) const { copy(to, from, n); }
  // Orders this stream's later work after the work queued on `other`'s stream so far (an event recorded
  // there and waited for here, on the device: the host does not wait).
  void after(const cuda_space& other) const {
    if (other.stream_ == stream_) return;
    state_->marker.record(other.stream_);
    detail::cuda_check(cudaStreamWaitEvent(stream_, state_->marker.native(), 0), "cudaStreamWaitEvent");
  }

  void gather(std::span<const const_segment> pieces, std::byte* to) const {
    auto& table = fresh_table();
    detail::gather_table(pieces, to, table);
    run(table);
  }
  void scatter(const std::byte* from, std::span<const segment> pieces) const {
    auto& table = fresh_table();
    detail::scatter_table(from, pieces, table);
    run(table);
  }
  void copy_pieces(std::span<const const_segment> from, std::span<const segment> to) const {
    auto& table = fresh_table();
    detail::cross_table(from, to, table);
    run(table);
  }
  void to_f32(dtype t, const std::byte* src, std::size_t first, std::size_t n, std::byte* dst) const {
    const detail::cast_piece p{src, dst, first, n, 0, t};
    run(std::span(&p, 1), detail::cast_direction::to_f32);
  }
  void from_f32(dtype t, const std::byte* src, std::size_t first, std::size_t n, std::byte* dst) const {
    const detail::cast_piece p{src, dst, first, n, 0, t};
    run(std::span(&p, 1), detail::cast_direction::from_f32);
  }

  // The first piece of the table holding a value float32 would change, or table.size(): one launch, then
  // the host reads the answer (a wait for this stream).
  std::size_t first_lossy_piece(std::span<const detail::cast_piece> table) const {
    const std::size_t tiles = detail::tile_prefix(table, state_->prefix);
    if (tiles == 0) return table.size();
    if (state_->verdict == nullptr) state_->verdict = allocate(sizeof(unsigned long long));
    fill(state_->verdict, sizeof(unsigned long long), std::byte{0xff});
    const auto [pieces, prefix] = state_->uploads.upload(table, std::span<const std::size_t>(state_->prefix));
    detail::lossy_kernel<<<blocks_of(tiles), detail::table_threads_per_block, 0, stream_>>>(
        pieces, prefix, table.size(), tiles, reinterpret_cast<unsigned long long*>(state_->verdict));
    detail::cuda_check(cudaGetLastError(), "a redist::cuda_space kernel launch");
    ++state_->launches;
    unsigned long long first = 0;
    to_host(reinterpret_cast<std::byte*>(&first), state_->verdict, sizeof first);
    return first < table.size() ? static_cast<std::size_t>(first) : table.size();
  }

  // Makes the tensors an op creates (tensor_traits<cuda_tensor>::allocate) on this stream, with the
  // allocator in use, until the scope ends.
  cuda_allocation_scope allocation_scope() const {
    return cuda_allocation_scope({stream_, detail::current_cuda_allocation().allocator});
  }

  // Staging memory of this space: device memory, stream-ordered (cudaMallocAsync, cudaFreeAsync).
  std::byte* allocate(std::size_t n) const {
    void* p = nullptr;
    if (n != 0) detail::cuda_check(cudaMallocAsync(&p, n, stream_), "cudaMallocAsync");
    return static_cast<std::byte*>(p);
  }
  void deallocate(std::byte* p, std::size_t) const noexcept {
    if (p != nullptr) cudaFreeAsync(p, stream_);
  }

  // A whole table of copies, or of casts one way, in one launch (none for an empty table).
  void run(std::span<const detail::copy_piece> table) const { launch<detail::table_op::copy>(table); }
  void run(std::span<const detail::cast_piece> table, detail::cast_direction d) const {
    if (d == detail::cast_direction::to_f32)
      launch<detail::table_op::to_f32>(table);
    else
      launch<detail::table_op::from_f32>(table);
  }

 private:
  struct state {
    explicit state(cudaStream_t s) : uploads(s), stream(s) {}
    state(const state&) = delete;
    state& operator=(const state&) = delete;
    ~state() {
      if (verdict != nullptr) cudaFreeAsync(verdict, stream);
    }
    detail::table_uploads uploads;
    detail::cuda_event marker;              // after()'s point on another stream
    std::vector<detail::copy_piece> table;  // a gather's or scatter's, built per call
    std::vector<std::size_t> prefix;
    std::size_t launches = 0;
    cudaStream_t stream;
    std::byte* verdict = nullptr;  // first_lossy_piece's answer
  };

  std::vector<detail::copy_piece>& fresh_table() const {
    state_->table.clear();
    return state_->table;
  }

  static unsigned blocks_of(std::size_t tiles) {
    const std::size_t blocks = (tiles + detail::table_warps_per_block - 1) / detail::table_warps_per_block;
    if (blocks > 0x7fffffffu) detail::fail("redist::cuda_space: a table of ", tiles, " tiles is too large");
    return static_cast<unsigned>(blocks);
  }

  template <detail::table_op Op, class Piece>
  void launch(std::span<const Piece> table) const {
    const std::size_t tiles = detail::tile_prefix(table, state_->prefix);
    if (tiles == 0) return;
    const auto [pieces, prefix] = state_->uploads.upload(table, std::span<const std::size_t>(state_->prefix));
    detail::table_kernel<Op><<<blocks_of(tiles), detail::table_threads_per_block, 0, stream_>>>(
        pieces, prefix, table.size(), tiles);
    detail::cuda_check(cudaGetLastError(), "a redist::cuda_space kernel launch");
    ++state_->launches;
  }

  cudaStream_t stream_;
  std::shared_ptr<state> state_;
};

template <>
struct space_policy<memory_space::device> {
  using type = cuda_space;
};

}  // namespace redist
