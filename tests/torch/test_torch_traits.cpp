// Unit tests of redist/adapters/torch.hpp: every dtype maps both ways through at::empty, dtypes and devices
// redist cannot read are errors naming them, a non-contiguous tensor fails validation naming its key, a view
// with a storage offset is read from its first element, and the one-call form over one rank returns
// at::Tensor results equal to tensors recomputed independently. A CUDA at::Tensor is refused (one tagged
// CUDA over host bytes stands in for it), and torch_cuda_tensor's traits read it; moving torch_cuda_tensor
// bytes needs a CUDA libtorch and a GPU, so here it is checked at compile time and by its metadata only.
#include "redist/adapters/torch.hpp"

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../unit/error_of.hpp"
#include "redist/comm/self.hpp"
#include "redist/core/error.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/redistribute.hpp"

namespace {

using traits = redist::tensor_traits<at::Tensor>;
using torch_batch = redist::sequence_batch<at::Tensor>;

static_assert(redist::tensor_like<redist::torch_cuda_tensor>);
static_assert(redist::allocatable_tensor<redist::torch_cuda_tensor>);
static_assert(redist::tensor_space<redist::torch_cuda_tensor> == redist::memory_space::device);
static_assert(redist::tensor_space<at::Tensor> == redist::memory_space::host);

// An at::Tensor that says it is on cuda:0 over host bytes: CPU-only libtorch cannot make a real one
// (at::empty and from_blob on CUDA throw), but the adapter only reads device, dtype and shape before
// deciding, so a TensorImpl tagged CUDA shows what a real one would meet. Its bytes are never read through
// the tensor.
at::Tensor cuda_tagged(float* host, std::int64_t rows, std::int64_t cols) {
  const auto bytes = static_cast<std::size_t>(rows * cols) * sizeof(float);
  c10::Storage storage(c10::Storage::use_byte_size_t(), bytes, c10::DataPtr(host, c10::Device(c10::kCUDA, 0)),
                       nullptr, false);
  auto impl = c10::make_intrusive<c10::TensorImpl>(
      std::move(storage), c10::DispatchKeySet(c10::DispatchKey::CUDA), caffe2::TypeMeta::Make<float>());
  impl->set_sizes_contiguous({rows, cols});
  return at::Tensor(std::move(impl));
}

using redist::test::error_of;

}  // namespace

TEST_CASE("torch adapter: every redist dtype round-trips through at::empty with its torch scalar type") {
  const std::vector<std::pair<redist::dtype, at::ScalarType>> pairs{
      {redist::dtype::f32, at::kFloat}, {redist::dtype::f64, at::kDouble},
      {redist::dtype::f16, at::kHalf},  {redist::dtype::bf16, at::kBFloat16},
      {redist::dtype::i8, at::kChar},   {redist::dtype::i16, at::kShort},
      {redist::dtype::i32, at::kInt},   {redist::dtype::i64, at::kLong},
      {redist::dtype::u8, at::kByte},   {redist::dtype::boolean, at::kBool}};
  CHECK(pairs.size() == redist::dtype_count);
  const std::int64_t shape[] = {3, 5};
  for (const auto& [ours, theirs] : pairs) {
    at::Tensor t = traits::allocate(ours, shape);
    CHECK((t.scalar_type() == theirs));
    CHECK(traits::dtype(t) == ours);
    CHECK(static_cast<std::size_t>(t.element_size()) == redist::size_of(ours));
    CHECK(traits::rank(t) == 2);
    CHECK(traits::extent(t, 0) == 3);
    CHECK(traits::extent(t, 1) == 5);
    CHECK(t.is_cpu());
    CHECK(traits::data(t) == t.data_ptr());
  }
}

TEST_CASE("torch adapter: dtypes redist cannot move and undefined tensors are named errors") {
  const at::Tensor complex = at::zeros({2}, at::kComplexFloat);
  CHECK(
      error_of([&] { (void)traits::dtype(complex); }) ==
      "redist::tensor_traits<at::Tensor>: torch dtype ComplexFloat has no redist dtype (float, double, half, "
      "bfloat16, int8/16/32/64, uint8, bool)");
  CHECK(error_of([] { (void)traits::dtype(at::Tensor()); }).find("an undefined at::Tensor") !=
        std::string::npos);
  // A batch checks its tensors when it is made: the same error.
  CHECK(error_of([&] {
          torch_batch({1}, {{"z", redist::dtype::f32, {}, {{2}}, complex}});
        }).find("torch dtype ComplexFloat") != std::string::npos);
}

TEST_CASE(
    "torch adapter: a transposed tensor fails validation naming its key; a narrowed view moves its bytes") {
  const at::Tensor base = at::arange(24, at::kLong).reshape({6, 4});
  CHECK(error_of([&] {
          torch_batch({1}, {{"rows", redist::dtype::i64, {6}, {{4}}, base.t()}});
        }) == "redist::sequence_batch: key 'rows': data is not contiguous");

  // Rows 2..4 of base: contiguous, starting 2 rows into the storage.
  const at::Tensor view = base.narrow(0, 2, 3);
  REQUIRE(view.is_contiguous());
  REQUIRE(view.storage_offset() == 8);
  const torch_batch b({7, 9}, {{"rows", redist::dtype::i64, {4}, {{1}, {2}}, view}});
  const redist::self_communicator self;
  const torch_batch got = redist::redistribute(self, b, {9, 7});
  const at::Tensor expected = at::cat({base.narrow(0, 3, 2), base.narrow(0, 2, 1)});
  CHECK(at::equal(got.data("rows"), expected));
  CHECK(got.data("rows").is_contiguous());
}

TEST_CASE(
    "torch adapter: a one-rank one-call redistribute of three keys reorders at::Tensor samples exactly") {
  // Samples 0..4: sample s has 1 + s tokens; tokens i64 = 100 s + t, logprobs f32 = -t / 8, hidden bf16 [t,
  // 3].
  std::vector<redist::sample_id> ids;
  redist::seqlen_table lens;
  std::vector<at::Tensor> tokens, logprobs, hidden;
  for (std::int64_t s = 0; s < 5; ++s) {
    ids.push_back(static_cast<redist::sample_id>(s));
    const std::int64_t n[] = {1 + s};
    lens.push_back(n);
    tokens.push_back(at::arange(1 + s, at::kLong) + 100 * s);
    logprobs.push_back(at::arange(1 + s, at::kFloat) / -8.0);
    hidden.push_back((at::arange(3 * (1 + s), at::kFloat) + s).reshape({1 + s, 3}).to(at::kBFloat16));
  }
  const torch_batch b(ids, {{"tokens", redist::dtype::i64, {}, lens, at::cat(tokens)},
                            {"logprobs", redist::dtype::f32, {}, lens, at::cat(logprobs)},
                            {"hidden", redist::dtype::bf16, {3}, lens, at::cat(hidden)}});
  const std::vector<redist::sample_id> wanted{4, 0, 2};
  const redist::self_communicator self;
  const torch_batch got = redist::redistribute(self, b, wanted);
  REQUIRE(got.size() == 3);
  CHECK(at::equal(got.data("tokens"), at::cat({tokens[4], tokens[0], tokens[2]})));
  CHECK(at::equal(got.data("logprobs"), at::cat({logprobs[4], logprobs[0], logprobs[2]})));
  CHECK(at::equal(got.data("hidden"), at::cat({hidden[4], hidden[0], hidden[2]})));
  CHECK((got.data("hidden").scalar_type() == at::kBFloat16));
}

TEST_CASE("torch adapter: a CUDA or meta at::Tensor is refused by name, never read as host memory") {
  float host[6] = {};
  const at::Tensor cuda = cuda_tagged(host, 2, 3);
  REQUIRE(cuda.is_cuda());
  CHECK(error_of([&] { (void)traits::dtype(cuda); }) ==
        "redist::tensor_traits<at::Tensor>: a tensor on cuda:0; at::Tensor is read as host memory, so a CUDA "
        "tensor goes in redist::torch_cuda_tensor");
  // The batch checks when it is made, before any redistribute could read a byte.
  CHECK(error_of([&] {
          torch_batch({1, 2}, {{"x", redist::dtype::f32, {3}, {{1}, {1}}, cuda}});
        }).find("a tensor on cuda:0") != std::string::npos);
  const at::Tensor meta = at::empty({4}, at::TensorOptions().dtype(at::kFloat).device(at::kMeta));
  CHECK(error_of([&] { (void)traits::dtype(meta); }).find("a tensor on meta;") != std::string::npos);
}

TEST_CASE("torch adapter: torch_cuda_tensor reads a CUDA tensor's device and shape and refuses a CPU one") {
  using cuda_traits = redist::tensor_traits<redist::torch_cuda_tensor>;
  float host[6] = {};
  redist::torch_cuda_tensor t{cuda_tagged(host, 2, 3)};
  CHECK(cuda_traits::dtype(t) == redist::dtype::f32);
  CHECK(cuda_traits::device(t) == 0);
  CHECK(redist::device_of(t) == 0);
  CHECK(cuda_traits::rank(t) == 2);
  CHECK(cuda_traits::extent(t, 1) == 3);
  CHECK(cuda_traits::is_contiguous(t));
  CHECK(cuda_traits::data(t) == static_cast<void*>(host));

  const redist::torch_cuda_tensor cpu{at::zeros({2}, at::kFloat)};
  CHECK(error_of([&] { (void)cuda_traits::dtype(cpu); }) ==
        "redist::tensor_traits<redist::torch_cuda_tensor>: a tensor on cpu where a CUDA tensor is expected");

  // Allocation goes to at::empty on the current CUDA device: it needs a CUDA build of libtorch and a GPU,
  // neither of which a CPU-only libtorch has, where it throws torch's own error instead.
  const std::int64_t shape[] = {4, 2};
  if (!at::hasCUDA()) {
    CHECK_THROWS(cuda_traits::allocate(redist::dtype::bf16, shape));
  } else {
    const redist::torch_cuda_tensor a = cuda_traits::allocate(redist::dtype::bf16, shape);
    CHECK(a.tensor.is_cuda());
    CHECK((a.tensor.scalar_type() == at::kBFloat16));
    CHECK(cuda_traits::extent(a, 0) == 4);
  }
}
