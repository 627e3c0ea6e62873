// Fuzz target: sequence_batch's validation on batches built from fuzzed ids, keys, dtypes (unknown codes
// too), trailing shapes, seqlens and data shapes, huge and negative values included. An accepted batch must
// have known dtypes and sizes that add up: every sample's bytes where the seqlens before it put them, and the
// key's bytes those of its tensor, computed here independently with overflow checks.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fuzz.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sequence_batch.hpp"

namespace user {

// A tensor that is its shape alone: validation reads shapes and dtypes, never bytes, so a fuzzed shape of
// any size costs nothing.
struct shape_tensor {
  redist::dtype type;
  std::vector<std::int64_t> shape;
  bool contiguous;
};

}  // namespace user

template <>
struct redist::tensor_traits<user::shape_tensor> {
  static constexpr memory_space space = memory_space::host;
  static void* data(user::shape_tensor&) { return nullptr; }
  static const void* data(const user::shape_tensor&) { return nullptr; }
  static redist::dtype dtype(const user::shape_tensor& t) { return t.type; }
  static std::size_t rank(const user::shape_tensor& t) { return t.shape.size(); }
  static std::int64_t extent(const user::shape_tensor& t, std::size_t d) { return t.shape[d]; }
  static bool is_contiguous(const user::shape_tensor& t) { return t.contiguous; }
};

namespace {

using batch = redist::sequence_batch<user::shape_tensor>;

// Small values mostly, so that checks pass often enough to go deeper; sometimes anything at all.
std::int64_t extent(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange(0, 7)) {
    case 0:
      return in.ConsumeIntegral<std::int64_t>();
    case 1:
      return std::numeric_limits<std::int64_t>::max() - in.ConsumeIntegralInRange<std::int64_t>(0, 2);
    case 2:
      return std::int64_t{1} << in.ConsumeIntegralInRange(30, 62);
    default:
      return in.ConsumeIntegralInRange<std::int64_t>(-1, 5);
  }
}

redist::dtype some_dtype(FuzzedDataProvider& in) {
  return static_cast<redist::dtype>(in.ConsumeIntegralInRange<int>(0, redist::dtype_count));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using redist::fuzz::check;
  FuzzedDataProvider in(data, size);
  const auto n = in.ConsumeIntegralInRange<std::size_t>(0, 16);
  std::vector<redist::sample_id> ids(n);
  for (auto& id : ids)
    id = in.ConsumeBool() ? in.ConsumeIntegralInRange<redist::sample_id>(0, 20)
                          : in.ConsumeIntegral<redist::sample_id>();
  const bool with_data = in.ConsumeBool();
  std::vector<redist::key_field<user::shape_tensor>> fields(in.ConsumeIntegralInRange<std::size_t>(0, 4));
  for (auto& f : fields) {
    f.name = in.ConsumeRandomLengthString(4);
    f.dtype = some_dtype(in);
    f.trailing_shape.resize(in.ConsumeIntegralInRange<std::size_t>(0, 3));
    for (auto& e : f.trailing_shape) e = extent(in);
    std::int64_t rows = 0;
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<std::int64_t> lens(in.ConsumeIntegralInRange<std::size_t>(0, 3));
      for (auto& l : lens) {
        l = extent(in);
        rows += l > 0 && l < (std::int64_t{1} << 40) ? l : 0;
      }
      f.seqlens.push_back(lens);
    }
    if (with_data != in.ConsumeBool() && !in.ConsumeBool()) continue;  // sometimes data for some keys only
    user::shape_tensor t{
        in.ConsumeBool() ? f.dtype : some_dtype(in), {}, in.ConsumeIntegralInRange(0, 7) != 0};
    t.shape.push_back(in.ConsumeBool() ? rows : extent(in));
    for (const auto e : f.trailing_shape)
      t.shape.push_back(in.ConsumeIntegralInRange(0, 5) != 0 ? e : extent(in));
    if (in.ConsumeIntegralInRange(0, 7) == 0) t.shape.resize(in.ConsumeIntegralInRange<std::size_t>(0, 4));
    f.data = std::move(t);
  }

  std::optional<batch> b;
  if (!redist::fuzz::accepted([&] { b = batch(ids, std::move(fields)); })) return 0;
  check(redist::fuzz::accepted([&] { b->validate(); }), "a constructed batch validates");
  for (const auto& f : b->fields()) {
    check(redist::size_of(f.dtype) != 0, "an accepted key has a known dtype");
    std::size_t row = redist::size_of(f.dtype);
    for (const auto e : f.trailing_shape)
      check(e >= 0 && !__builtin_mul_overflow(row, static_cast<std::size_t>(e), &row), "row bytes fit");
    std::size_t at = 0;
    for (std::size_t i = 0; i < b->size(); ++i) {
      std::int64_t tokens = 0;
      for (const auto l : f.seqlens[i])
        check(l >= 0 && !__builtin_add_overflow(tokens, l, &tokens), "tokens fit");
      std::size_t bytes = 0;
      check(!__builtin_mul_overflow(static_cast<std::size_t>(tokens), row, &bytes), "sample bytes fit");
      const auto r = b->sample_bytes(f.name, i);
      check(r.offset == at && r.size == bytes, "a sample's bytes follow the seqlens before it");
      check(b->tokens(f.name, i) == tokens, "a sample's tokens are its seqlens' sum");
      check(!__builtin_add_overflow(at, bytes, &at), "a key's bytes fit");
    }
    if (f.data) {
      std::size_t tensor = 0;
      check(redist::detail::shape_bytes(f.data->type, f.data->shape, tensor), "the tensor's bytes fit");
      check(tensor == at, "a key's bytes are its tensor's");
      check(f.data->contiguous, "an accepted tensor is contiguous");
    }
  }
  return 0;
}
