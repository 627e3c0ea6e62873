// PyTorch tensors for redist, for code that links libtorch (redist itself never includes it): at::Tensor on
// the CPU as a host tensor, and redist::torch_cuda_tensor, an at::Tensor on a CUDA device, as a device
// tensor.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/tensor_traits.hpp"

namespace redist {

namespace detail {

inline at::ScalarType torch_scalar_type(redist::dtype t) {
  switch (t) {
    case redist::dtype::f32:
      return at::kFloat;
    case redist::dtype::f64:
      return at::kDouble;
    case redist::dtype::f16:
      return at::kHalf;
    case redist::dtype::bf16:
      return at::kBFloat16;
    case redist::dtype::i8:
      return at::kChar;
    case redist::dtype::i16:
      return at::kShort;
    case redist::dtype::i32:
      return at::kInt;
    case redist::dtype::i64:
      return at::kLong;
    case redist::dtype::u8:
      return at::kByte;
    case redist::dtype::boolean:
      return at::kBool;
  }
  fail("redist::torch: dtype ", static_cast<int>(t), " has no torch scalar type");
}

// A torch tensor's dtype, or a redist::error naming the torch dtype that redist cannot move (complex,
// quantized, unsigned beyond 8 bits) and the device when it is not where the traits read it.
inline redist::dtype torch_dtype(const at::Tensor& t, bool on_cuda, const char* who) {
  if (!t.defined()) fail(who, ": an undefined at::Tensor (default-constructed) holds no data");
  if (t.is_cuda() != on_cuda || (!on_cuda && !t.is_cpu()))
    fail(who, ": a tensor on ", t.device().str(), on_cuda ? " where a CUDA tensor is expected" : "",
         on_cuda ? ""
                 : "; at::Tensor is read as host memory, so a CUDA tensor goes in redist::torch_cuda_tensor");
  switch (t.scalar_type()) {
    case at::kFloat:
      return redist::dtype::f32;
    case at::kDouble:
      return redist::dtype::f64;
    case at::kHalf:
      return redist::dtype::f16;
    case at::kBFloat16:
      return redist::dtype::bf16;
    case at::kChar:
      return redist::dtype::i8;
    case at::kShort:
      return redist::dtype::i16;
    case at::kInt:
      return redist::dtype::i32;
    case at::kLong:
      return redist::dtype::i64;
    case at::kByte:
      return redist::dtype::u8;
    case at::kBool:
      return redist::dtype::boolean;
    default:
      fail(who, ": torch dtype ", std::string(at::toString(t.scalar_type())),
           " has no redist dtype (float, double, half, bfloat16, int8/16/32/64, uint8, bool)");
  }
}

inline at::Tensor torch_empty(redist::dtype t, std::span<const std::int64_t> shape, at::Device device) {
  return at::empty(at::IntArrayRef(shape.data(), shape.size()),
                   at::TensorOptions().dtype(torch_scalar_type(t)).device(device));
}

}  // namespace detail

// at::Tensor on the CPU. Row-major contiguity is checked by validation (a transposed or strided view fails
// with an error naming its key); a view with a storage offset is read from its first element. Tensors redist
// creates come from at::empty. A CUDA at::Tensor here is an error, never read as host memory.
template <>
struct tensor_traits<at::Tensor> {
  static void* data(at::Tensor& t) { return t.data_ptr(); }
  static const void* data(const at::Tensor& t) { return t.data_ptr(); }
  static redist::dtype dtype(const at::Tensor& t) {
    return detail::torch_dtype(t, false, "redist::tensor_traits<at::Tensor>");
  }
  static std::size_t rank(const at::Tensor& t) { return static_cast<std::size_t>(t.dim()); }
  static std::int64_t extent(const at::Tensor& t, std::size_t dim) {
    return t.size(static_cast<std::int64_t>(dim));
  }
  static bool is_contiguous(const at::Tensor& t) { return t.is_contiguous(); }
  static at::Tensor allocate(redist::dtype t, std::span<const std::int64_t> shape) {
    return detail::torch_empty(t, shape, at::kCPU);
  }
};

// An at::Tensor on a CUDA device, moved with a cuda_space on a stream. A wrapper rather than a second reading
// of at::Tensor because a tensor type's memory space is fixed at compile time and at::Tensor's device is not.
// Tensors redist creates come from at::empty on kCUDA with no index, which torch resolves to the current
// device (c10::cuda::current_device() would tie this header to libc10_cuda), through torch's caching
// allocator, which orders them on torch's current stream: pass that stream to the call
// (cuda_space(at::cuda::getCurrentCUDAStream())) so that allocation, copies and the caller's kernels share
// one order. It compiles against any libtorch; running it needs one built with CUDA and a GPU (a CPU-only
// libtorch throws from allocate), which is why its tests here stop at metadata.
struct torch_cuda_tensor {
  at::Tensor tensor;
};

template <>
struct tensor_traits<torch_cuda_tensor> {
  static constexpr memory_space space = memory_space::device;
  static int device(const torch_cuda_tensor& t) { return static_cast<int>(t.tensor.get_device()); }
  static void* data(torch_cuda_tensor& t) { return t.tensor.data_ptr(); }
  static const void* data(const torch_cuda_tensor& t) { return t.tensor.data_ptr(); }
  static redist::dtype dtype(const torch_cuda_tensor& t) {
    return detail::torch_dtype(t.tensor, true, "redist::tensor_traits<redist::torch_cuda_tensor>");
  }
  static std::size_t rank(const torch_cuda_tensor& t) { return static_cast<std::size_t>(t.tensor.dim()); }
  static std::int64_t extent(const torch_cuda_tensor& t, std::size_t dim) {
    return t.tensor.size(static_cast<std::int64_t>(dim));
  }
  static bool is_contiguous(const torch_cuda_tensor& t) { return t.tensor.is_contiguous(); }
  static torch_cuda_tensor allocate(redist::dtype t, std::span<const std::int64_t> shape) {
    return {detail::torch_empty(t, shape, at::Device(at::kCUDA))};
  }
};

static_assert(allocatable_tensor<at::Tensor> && tensor_space<at::Tensor> == memory_space::host);
static_assert(allocatable_tensor<torch_cuda_tensor> &&
              tensor_space<torch_cuda_tensor> == memory_space::device);

}  // namespace redist
