// Tests of the tensor customization point: a user type becomes usable by specializing tensor_traits alone,
// a type whose traits lack a member is rejected, and host_tensor / host_tensor_view behave as documented.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "redist/core/host_tensor.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/core/tensor_traits.hpp"

namespace user {

// A tensor type written without redist in mind: shape as int dims, storage in a shared buffer.
struct blob {
  redist::dtype type;
  std::vector<int> dims;
  std::shared_ptr<std::vector<unsigned char>> storage;
  bool contiguous = true;
};

// Its traits lack extent(): not a tensor.
struct shapeless {
  std::vector<unsigned char> bytes;
};

}  // namespace user

template <>
struct redist::tensor_traits<user::blob> {
  static constexpr memory_space space = memory_space::host;
  static void* data(user::blob& t) { return t.storage->data(); }
  static const void* data(const user::blob& t) { return t.storage->data(); }
  static redist::dtype dtype(const user::blob& t) { return t.type; }
  static std::size_t rank(const user::blob& t) { return t.dims.size(); }
  static std::int64_t extent(const user::blob& t, std::size_t d) { return t.dims[d]; }
  static bool is_contiguous(const user::blob& t) { return t.contiguous; }
  static user::blob allocate(redist::dtype type, std::span<const std::int64_t> shape) {
    std::size_t n = redist::size_of(type);
    std::vector<int> dims;
    for (auto e : shape) {
      dims.push_back(static_cast<int>(e));
      n *= static_cast<std::size_t>(e);
    }
    return {type, dims, std::make_shared<std::vector<unsigned char>>(n), true};
  }
};

template <>
struct redist::tensor_traits<user::shapeless> {
  static constexpr memory_space space = memory_space::host;
  static void* data(user::shapeless& t) { return t.bytes.data(); }
  static const void* data(const user::shapeless& t) { return t.bytes.data(); }
  static redist::dtype dtype(const user::shapeless&) { return redist::dtype::u8; }
  static std::size_t rank(const user::shapeless&) { return 1; }
};

static_assert(redist::tensor_like<user::blob> && redist::allocatable_tensor<user::blob>);
static_assert(!redist::tensor_like<user::shapeless>);
static_assert(!redist::detail::traits_have_shape<user::shapeless> &&
              redist::detail::traits_have_data<user::shapeless>);
static_assert(!redist::tensor_like<std::vector<float>>);  // no traits at all
static_assert(redist::tensor_like<redist::host_tensor> && redist::allocatable_tensor<redist::host_tensor>);
static_assert(redist::tensor_like<redist::host_tensor_view> &&
              !redist::allocatable_tensor<redist::host_tensor_view>);

TEST_CASE("a user tensor type works in sequence_batch through its traits alone") {
  auto t = redist::tensor_traits<user::blob>::allocate(redist::dtype::i16, std::vector<std::int64_t>{5, 2});
  for (std::size_t i = 0; i < t.storage->size(); ++i) (*t.storage)[i] = static_cast<unsigned char>(i);
  redist::sequence_batch<user::blob> b({3, 1}, {{"k", redist::dtype::i16, {2}, {{2, 1}, {2}}, t}});
  auto s = b.select({1});
  REQUIRE(s.data("k").dims == std::vector<int>{2, 2});
  for (std::size_t i = 0; i < 8; ++i) CHECK((*s.data("k").storage)[i] == static_cast<unsigned char>(12 + i));
  t.contiguous = false;
  CHECK_THROWS_WITH_AS(
      (redist::sequence_batch<user::blob>({3, 1}, {{"k", redist::dtype::i16, {2}, {{2, 1}, {2}}, t}})),
      "redist::sequence_batch: key 'k': data is not contiguous", redist::error);
}

TEST_CASE("host_tensor: aligned, zero-filled, deep copies, cheap moves, typed access") {
  redist::host_tensor t(redist::dtype::i32, {3, 5});
  CHECK(t.nbytes() == 60);
  CHECK(t.numel() == 15);
  CHECK(t.rank() == 2);
  CHECK(t.extent(1) == 5);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % redist::host_tensor::alignment == 0);
  auto v = t.values<std::int32_t>();
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == 0);
  v[7] = 42;
  redist::host_tensor copy = t;
  CHECK(copy.data() != t.data());
  CHECK(copy.values<std::int32_t>()[7] == 42);
  const void* before = t.data();
  redist::host_tensor moved = std::move(t);
  CHECK(moved.data() == before);
  CHECK(t.nbytes() == 0);  // NOLINT(bugprone-use-after-move): a moved-from tensor is empty
  CHECK_THROWS_WITH_AS(moved.values<float>(), "redist::host_tensor::values: tensor holds i32, not f32",
                       redist::error);
  CHECK_THROWS_WITH_AS(redist::host_tensor(redist::dtype::f32, {2, -1}),
                       "redist::host_tensor: extent -1 of dim 1 is negative", redist::error);
  CHECK_THROWS_WITH_AS(redist::host_tensor(redist::dtype::f64, {1LL << 40, 1LL << 30}),
                       "redist::host_tensor: size overflows", redist::error);
  redist::host_tensor empty(redist::dtype::bf16, {0, 4});
  CHECK(empty.nbytes() == 0);
  CHECK(redist::host_tensor(redist::dtype::u8, {}).nbytes() == 1);  // a scalar holds one element
}

TEST_CASE("host_tensor_view: sees the owner's bytes") {
  redist::host_tensor t(redist::dtype::u8, {4});
  redist::host_tensor_view v(t);
  CHECK(v.data() == t.data());
  static_cast<unsigned char*>(v.data())[2] = 9;
  CHECK(t.values<std::uint8_t>()[2] == 9);
  CHECK(v.shape()[0] == 4);
}
