// redist::host_tensor, the default tensor type (owning, contiguous, 64-byte aligned host memory), and
// redist::host_tensor_view, a non-owning view of someone else's contiguous host buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"

namespace redist {

namespace detail {

// Bytes of a dense tensor, the product taken dim by dim: false when an extent is negative or the product
// overflows on the way, even where a later extent is 0 (every size redist computes is this one, so no
// reader of the shape can get a wrapped count).
inline bool shape_bytes(redist::dtype t, std::span<const std::int64_t> shape, std::size_t& bytes) noexcept {
  bytes = size_of(t);
  for (const std::int64_t e : shape) {
    if (e < 0 || !checked_mul(bytes, static_cast<std::size_t>(e), bytes)) return false;
  }
  return true;
}

// The bytes of `rows` rows of `trailing`, sized as shape_bytes sizes {rows, trailing...} (a zero trailing
// extent does not hide a product that overflows before it); none when it overflows or an extent is negative.
inline std::optional<std::size_t> rows_bytes(redist::dtype t, std::int64_t rows,
                                             std::span<const std::int64_t> trailing) noexcept {
  std::size_t bytes = size_of(t);
  if (rows < 0 || !checked_mul(bytes, static_cast<std::size_t>(rows), bytes)) return std::nullopt;
  for (const std::int64_t e : trailing) {
    if (e < 0 || !checked_mul(bytes, static_cast<std::size_t>(e), bytes)) return std::nullopt;
  }
  return bytes;
}

// The same, throwing when the shape is negative or the size overflows.
inline std::size_t dense_bytes(redist::dtype t, std::span<const std::int64_t> shape, const char* who) {
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) fail(who, ": extent ", shape[d], " of dim ", d, " is negative");
  }
  std::size_t bytes = 0;
  if (!shape_bytes(t, shape, bytes)) fail(who, ": size overflows");
  return bytes;
}

}  // namespace detail

class host_tensor {
 public:
  static constexpr std::size_t alignment = 64;

  // An empty one-dimensional f32 tensor.
  host_tensor() : shape_{0} {}

  // Zero-filled.
  host_tensor(redist::dtype t, std::vector<std::int64_t> shape)
      : host_tensor(t, std::move(shape), no_fill{}) {
    host_space::fill(bytes_.get(), nbytes_);
  }

  // Contents left indeterminate, for buffers that are about to be overwritten whole.
  static host_tensor uninitialized(redist::dtype t, std::vector<std::int64_t> shape) {
    return host_tensor(t, std::move(shape), no_fill{});
  }

  host_tensor(const host_tensor& other) : host_tensor(other.dtype_, other.shape_, no_fill{}) {
    host_space::copy(bytes_.get(), other.bytes_.get(), nbytes_);
  }
  host_tensor& operator=(const host_tensor& other) {
    if (this != &other) *this = host_tensor(other);
    return *this;
  }
  host_tensor(host_tensor&& other) noexcept
      : dtype_(other.dtype_),
        shape_(std::exchange(other.shape_, {0})),
        nbytes_(std::exchange(other.nbytes_, 0)),
        bytes_(std::move(other.bytes_)) {}
  host_tensor& operator=(host_tensor&& other) noexcept {
    dtype_ = other.dtype_;
    shape_ = std::exchange(other.shape_, {0});
    nbytes_ = std::exchange(other.nbytes_, 0);
    bytes_ = std::move(other.bytes_);
    return *this;
  }
  ~host_tensor() = default;

  redist::dtype dtype() const noexcept { return dtype_; }
  std::span<const std::int64_t> shape() const noexcept { return shape_; }
  std::size_t rank() const noexcept { return shape_.size(); }
  std::int64_t extent(std::size_t dim) const { return shape_.at(dim); }
  std::size_t nbytes() const noexcept { return nbytes_; }
  std::size_t numel() const noexcept { return nbytes_ / size_of(dtype_); }

  void* data() noexcept { return bytes_.get(); }
  const void* data() const noexcept { return bytes_.get(); }
  std::span<std::byte> bytes() noexcept { return {bytes_.get(), nbytes_}; }
  std::span<const std::byte> bytes() const noexcept { return {bytes_.get(), nbytes_}; }

  // Typed access; T must be the C++ type of this tensor's dtype (see redist::dtype_of).
  template <class T>
  std::span<T> values() {
    check_type<T>();
    return {static_cast<T*>(data()), numel()};
  }
  template <class T>
  std::span<const T> values() const {
    check_type<T>();
    return {static_cast<const T*>(data()), numel()};
  }

 private:
  struct no_fill {};
  struct aligned_delete {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{alignment}); }
  };

  host_tensor(redist::dtype t, std::vector<std::int64_t> shape, no_fill)
      : dtype_(t), shape_(std::move(shape)), nbytes_(detail::dense_bytes(t, shape_, "redist::host_tensor")) {
    if (nbytes_ != 0)
      bytes_.reset(static_cast<std::byte*>(::operator new[](nbytes_, std::align_val_t{alignment})));
  }

  template <class T>
  void check_type() const {
    if (dtype_of<T> != dtype_)
      detail::fail("redist::host_tensor::values: tensor holds ", name(dtype_), ", not ", name(dtype_of<T>));
  }

  redist::dtype dtype_ = redist::dtype::f32;
  std::vector<std::int64_t> shape_;
  std::size_t nbytes_ = 0;
  std::unique_ptr<std::byte[], aligned_delete> bytes_;
};

// Non-owning: the viewed buffer must outlive the view. It cannot allocate, so batches of views support
// validation and byte ranges but not the operations that build new tensors.
class host_tensor_view {
 public:
  host_tensor_view(void* data, redist::dtype t, std::vector<std::int64_t> shape)
      : data_(data), dtype_(t), shape_(std::move(shape)) {
    detail::dense_bytes(dtype_, shape_, "redist::host_tensor_view");
  }
  host_tensor_view(host_tensor& t)
      : host_tensor_view(t.data(), t.dtype(), {t.shape().begin(), t.shape().end()}) {}

  redist::dtype dtype() const noexcept { return dtype_; }
  std::span<const std::int64_t> shape() const noexcept { return shape_; }
  void* data() const noexcept { return data_; }

 private:
  void* data_;
  redist::dtype dtype_;
  std::vector<std::int64_t> shape_;
};

template <>
struct tensor_traits<host_tensor> {
  static constexpr memory_space space = memory_space::host;
  static void* data(host_tensor& t) noexcept { return t.data(); }
  static const void* data(const host_tensor& t) noexcept { return t.data(); }
  static redist::dtype dtype(const host_tensor& t) noexcept { return t.dtype(); }
  static std::size_t rank(const host_tensor& t) noexcept { return t.rank(); }
  static std::int64_t extent(const host_tensor& t, std::size_t dim) { return t.extent(dim); }
  static host_tensor allocate(redist::dtype t, std::span<const std::int64_t> shape) {
    return host_tensor::uninitialized(t, {shape.begin(), shape.end()});
  }
};

template <>
struct tensor_traits<host_tensor_view> {
  static constexpr memory_space space = memory_space::host;
  static void* data(host_tensor_view& t) noexcept { return t.data(); }
  static const void* data(const host_tensor_view& t) noexcept { return t.data(); }
  static redist::dtype dtype(const host_tensor_view& t) noexcept { return t.dtype(); }
  static std::size_t rank(const host_tensor_view& t) noexcept { return t.shape().size(); }
  static std::int64_t extent(const host_tensor_view& t, std::size_t dim) { return t.shape()[dim]; }
};

static_assert(allocatable_tensor<host_tensor>);
static_assert(tensor_like<host_tensor_view> && !allocatable_tensor<host_tensor_view>);

}  // namespace redist
