// redist::tensor_traits<T>, the customization point that makes a user's tensor type usable by redist,
// and the redist::tensor_like concept it must satisfy.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "redist/core/dtype.hpp"
#include "redist/core/memory_space.hpp"

namespace redist {

// Specialize for a tensor type T. A tensor is dense, row-major and contiguous:
//
//   template <> struct redist::tensor_traits<my_tensor> {
//     static void* data(my_tensor& t);                       // first byte
//     static const void* data(const my_tensor& t);
//     static redist::dtype dtype(const my_tensor& t);
//     static std::size_t rank(const my_tensor& t);           // number of dims
//     static std::int64_t extent(const my_tensor& t, std::size_t dim);
//     // Optional: lets redist create tensors (unpack, select, gather, receive).
//     static my_tensor allocate(redist::dtype t, std::span<const std::int64_t> shape);
//     // Optional: checked by validation when present.
//     static bool is_contiguous(const my_tensor& t);
//     // Optional: where the bytes live (host when absent); device tensors also say which device.
//     static constexpr redist::memory_space space = redist::memory_space::host;
//     static int device(const my_tensor& t);                 // with space = device: the CUDA device id
//   };
template <class T>
struct tensor_traits {
  // Marks the primary template so the diagnostic can say "not specialized" instead of listing members.
  static constexpr bool redist_unspecialized = true;
};

namespace detail {

template <class T>
concept traits_specialized = !requires {
  tensor_traits<T>::redist_unspecialized;
};

template <class T>
concept traits_have_space = requires {
  { tensor_traits<T>::space } -> std::convertible_to<memory_space>;
};

template <class T>
concept traits_have_device = requires(const T& t) {
  { tensor_traits<T>::device(t) } -> std::convertible_to<int>;
};

template <class T>
concept traits_have_data = requires(T& t, const T& ct) {
  { tensor_traits<T>::data(t) } -> std::convertible_to<void*>;
  { tensor_traits<T>::data(ct) } -> std::convertible_to<const void*>;
};

template <class T>
concept traits_have_dtype = requires(const T& t) {
  { tensor_traits<T>::dtype(t) } -> std::same_as<redist::dtype>;
};

template <class T>
concept traits_have_shape = requires(const T& t, std::size_t dim) {
  { tensor_traits<T>::rank(t) } -> std::convertible_to<std::size_t>;
  { tensor_traits<T>::extent(t, dim) } -> std::convertible_to<std::int64_t>;
};

template <class T>
concept traits_have_contiguity = requires(const T& t) {
  { tensor_traits<T>::is_contiguous(t) } -> std::convertible_to<bool>;
};

template <class T>
constexpr memory_space space_in_traits() noexcept {
  if constexpr (traits_have_space<T>)
    return tensor_traits<T>::space;
  else
    return memory_space::host;
}

// Evaluated inside a static_assert by the library's class templates: each failing requirement gets a
// sentence of its own, and only the root cause fires when the traits are not specialized at all.
template <class T>
constexpr bool diagnose_tensor_like() {
  constexpr bool s = traits_specialized<T>;
  static_assert(s,
                "redist::tensor_like<T>: redist::tensor_traits<T> is not specialized for this type; "
                "specialize it (see redist/core/tensor_traits.hpp)");
  static_assert(!s || traits_have_data<T>,
                "redist::tensor_like<T>: tensor_traits<T> lacks `static void* data(T&)` and "
                "`static const void* data(const T&)`");
  static_assert(!s || traits_have_dtype<T>,
                "redist::tensor_like<T>: tensor_traits<T> lacks `static redist::dtype dtype(const T&)`");
  static_assert(!s || traits_have_shape<T>,
                "redist::tensor_like<T>: tensor_traits<T> lacks `static std::size_t rank(const T&)` and "
                "`static std::int64_t extent(const T&, std::size_t dim)`");
  static_assert(!s || space_in_traits<T>() == memory_space::host || traits_have_device<T>,
                "redist::tensor_like<T>: tensor_traits<T> says space = device but lacks "
                "`static int device(const T&)`, the CUDA device the bytes live on");
  return true;
}

}  // namespace detail

template <class T>
concept tensor_like = detail::traits_specialized<T> && detail::traits_have_data<T> &&
    detail::traits_have_dtype<T> && detail::traits_have_shape<T> &&
    (detail::space_in_traits<T>() == memory_space::host || detail::traits_have_device<T>);

// Where a tensor type's bytes live, and the memory space policy that copies them.
template <class T>
inline constexpr memory_space tensor_space = detail::space_in_traits<T>();
template <class T>
using space_of = typename space_policy<tensor_space<T>>::type;

// The CUDA device a tensor's bytes live on (its traits' device(t)), or -1 for a host tensor.
template <tensor_like T>
int device_of(const T& t) {
  if constexpr (tensor_space<T> == memory_space::host)
    return -1;
  else
    return static_cast<int>(tensor_traits<T>::device(t));
}

// A tensor_like type whose traits can also create tensors.
template <class T>
concept allocatable_tensor = tensor_like<T> &&
    requires(redist::dtype t, std::span<const std::int64_t> shape) {
  { tensor_traits<T>::allocate(t, shape) } -> std::same_as<T>;
};

}  // namespace redist
