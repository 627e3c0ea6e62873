// Unit tests of redist/adapters/torch.hpp: every dtype maps both ways through at::empty, dtypes and devices
// redist cannot read are errors naming them, a non-contiguous tensor fails validation naming its key, a view
// with a storage offset is read from its first element, and the one-call form over one rank returns
// at::Tensor results equal to tensors recomputed independently. torch_cuda_tensor is checked at compile time.
#include "redist/adapters/torch.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "redist/comm/self.hpp"
#include "redist/core/error.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/redistribute.hpp"

namespace {

using traits = redist::tensor_traits<at::Tensor>;
using torch_batch = redist::sequence_batch<at::Tensor>;

static_assert(redist::allocatable_tensor<redist::torch_cuda_tensor>);
static_assert(redist::tensor_space<redist::torch_cuda_tensor> == redist::memory_space::device);
static_assert(redist::tensor_space<at::Tensor> == redist::memory_space::host);

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const redist::error& e) {
    return e.what();
  }
  return "no error";
}

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
