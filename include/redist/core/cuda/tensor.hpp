// redist::cuda_tensor (owning, contiguous device memory, allocated stream-ordered with cudaMallocAsync or by
// a caller's allocator) and redist::cuda_tensor_view (a non-owning view of someone else's device buffer).
// Host code only: holding device tensors needs the CUDA runtime, not nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "redist/core/cuda/runtime.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/tensor_traits.hpp"

namespace redist {

// Where a caller's device memory comes from (a caching allocator, a pool): both calls are ordered on the
// stream they are given, like cudaMallocAsync and cudaFreeAsync.
struct cuda_allocator {
  virtual void* allocate(std::size_t bytes, cudaStream_t stream) = 0;
  virtual void deallocate(void* p, std::size_t bytes, cudaStream_t stream) noexcept = 0;

 protected:
  ~cuda_allocator() = default;
};

// The stream on which the library makes device tensors (tensor_traits<cuda_tensor>::allocate, and so every
// tensor an op creates), and the allocator it uses (cudaMallocAsync when none): the per-thread default stream
// unless a cuda_allocation_scope says otherwise on this thread.
struct cuda_allocation {
  cudaStream_t stream = cudaStreamPerThread;
  cuda_allocator* allocator = nullptr;
};
namespace detail {
inline cuda_allocation& current_cuda_allocation() noexcept {
  thread_local cuda_allocation current;
  return current;
}
}  // namespace detail

// Makes `a` the current allocation of this thread until the scope ends. Not copyable.
class cuda_allocation_scope {
 public:
  explicit cuda_allocation_scope(cuda_allocation a) noexcept
      : saved_(std::exchange(detail::current_cuda_allocation(), a)) {}
  cuda_allocation_scope(const cuda_allocation_scope&) = delete;
  cuda_allocation_scope& operator=(const cuda_allocation_scope&) = delete;
  ~cuda_allocation_scope() { detail::current_cuda_allocation() = saved_; }

 private:
  cuda_allocation saved_;
};

// Owning device memory on the device that was current when it was made; freed on the stream it was
// allocated on (stream-ordered: the free waits for the work queued there before it, nothing else). Contents
// start indeterminate: device memory is filled by the work that follows, never zeroed behind the caller's
// back. Move-only: a copy of device memory is an explicit operation on a stream.
class cuda_tensor {
 public:
  // An empty one-dimensional f32 tensor, holding no memory.
  cuda_tensor() : shape_{0} {}

  cuda_tensor(redist::dtype t, std::vector<std::int64_t> shape,
              cuda_allocation a = detail::current_cuda_allocation())
      : dtype_(t),
        shape_(std::move(shape)),
        nbytes_(detail::dense_bytes(t, shape_, "redist::cuda_tensor")),
        alloc_(a) {
    detail::cuda_check(cudaGetDevice(&device_), "cudaGetDevice");
    if (nbytes_ == 0) return;
    if (alloc_.allocator != nullptr) {
      data_ = alloc_.allocator->allocate(nbytes_, alloc_.stream);
      if (data_ == nullptr) detail::fail("redist::cuda_tensor: the allocator returned no memory");
    } else {
      detail::cuda_check(cudaMallocAsync(&data_, nbytes_, alloc_.stream), "cudaMallocAsync");
    }
  }
  cuda_tensor(cuda_tensor&& other) noexcept { swap(other); }
  cuda_tensor& operator=(cuda_tensor&& other) noexcept {
    cuda_tensor(std::move(other)).swap(*this);
    return *this;
  }
  cuda_tensor(const cuda_tensor&) = delete;
  cuda_tensor& operator=(const cuda_tensor&) = delete;
  ~cuda_tensor() {
    if (data_ == nullptr) return;
    if (alloc_.allocator != nullptr)
      alloc_.allocator->deallocate(data_, nbytes_, alloc_.stream);
    else
      cudaFreeAsync(data_, alloc_.stream);
  }

  redist::dtype dtype() const noexcept { return dtype_; }
  std::span<const std::int64_t> shape() const noexcept { return shape_; }
  std::size_t rank() const noexcept { return shape_.size(); }
  std::int64_t extent(std::size_t dim) const { return shape_.at(dim); }
  std::size_t nbytes() const noexcept { return nbytes_; }
  int device() const noexcept { return device_; }
  cudaStream_t stream() const noexcept { return alloc_.stream; }
  void* data() noexcept { return data_; }
  const void* data() const noexcept { return data_; }

 private:
  void swap(cuda_tensor& o) noexcept {
    std::swap(dtype_, o.dtype_);
    std::swap(shape_, o.shape_);
    std::swap(nbytes_, o.nbytes_);
    std::swap(device_, o.device_);
    std::swap(alloc_, o.alloc_);
    std::swap(data_, o.data_);
  }

  redist::dtype dtype_ = redist::dtype::f32;
  std::vector<std::int64_t> shape_;
  std::size_t nbytes_ = 0;
  int device_ = 0;
  cuda_allocation alloc_;
  void* data_ = nullptr;
};

// Non-owning: the viewed device buffer must outlive the view and every operation queued on it.
class cuda_tensor_view {
 public:
  cuda_tensor_view(void* data, redist::dtype t, std::vector<std::int64_t> shape, int device)
      : data_(data), dtype_(t), shape_(std::move(shape)), device_(device) {
    detail::dense_bytes(dtype_, shape_, "redist::cuda_tensor_view");
  }
  cuda_tensor_view(cuda_tensor& t)
      : cuda_tensor_view(t.data(), t.dtype(), {t.shape().begin(), t.shape().end()}, t.device()) {}

  redist::dtype dtype() const noexcept { return dtype_; }
  std::span<const std::int64_t> shape() const noexcept { return shape_; }
  void* data() const noexcept { return data_; }
  int device() const noexcept { return device_; }

 private:
  void* data_;
  redist::dtype dtype_;
  std::vector<std::int64_t> shape_;
  int device_;
};

template <>
struct tensor_traits<cuda_tensor> {
  static constexpr memory_space space = memory_space::device;
  static int device(const cuda_tensor& t) noexcept { return t.device(); }
  static void* data(cuda_tensor& t) noexcept { return t.data(); }
  static const void* data(const cuda_tensor& t) noexcept { return t.data(); }
  static redist::dtype dtype(const cuda_tensor& t) noexcept { return t.dtype(); }
  static std::size_t rank(const cuda_tensor& t) noexcept { return t.rank(); }
  static std::int64_t extent(const cuda_tensor& t, std::size_t dim) { return t.extent(dim); }
  static cuda_tensor allocate(redist::dtype t, std::span<const std::int64_t> shape) {
    return cuda_tensor(t, {shape.begin(), shape.end()});
  }
};

template <>
struct tensor_traits<cuda_tensor_view> {
  static constexpr memory_space space = memory_space::device;
  static int device(const cuda_tensor_view& t) noexcept { return t.device(); }
  static void* data(cuda_tensor_view& t) noexcept { return t.data(); }
  static const void* data(const cuda_tensor_view& t) noexcept { return t.data(); }
  static redist::dtype dtype(const cuda_tensor_view& t) noexcept { return t.dtype(); }
  static std::size_t rank(const cuda_tensor_view& t) noexcept { return t.shape().size(); }
  static std::int64_t extent(const cuda_tensor_view& t, std::size_t dim) { return t.shape()[dim]; }
};

static_assert(allocatable_tensor<cuda_tensor>);
static_assert(tensor_like<cuda_tensor_view> && !allocatable_tensor<cuda_tensor_view>);
static_assert(tensor_space<cuda_tensor> == memory_space::device);

}  // namespace redist
