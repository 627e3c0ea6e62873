// Unit tests of the host memory space (core/memory_space.hpp): copies, fills, gathers and scatters of pieces
// checked byte for byte, piece merging, the float32 casts against per-value conversions, and the space a
// tensor type's traits give (host when they say nothing).
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/core/tensor_traits.hpp"

namespace {

using redist::const_segment;
using redist::dtype;
using redist::host_space;
using redist::segment;

std::vector<std::byte> counting(std::size_t n, int from = 0) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((static_cast<int>(i) + from) & 0xff);
  return v;
}

// A tensor type whose traits say nothing of where its bytes live.
struct plain {
  std::vector<float> v;
};

}  // namespace

template <>
struct redist::tensor_traits<plain> {
  static void* data(plain& t) { return t.v.data(); }
  static const void* data(const plain& t) { return t.v.data(); }
  static redist::dtype dtype(const plain&) { return redist::dtype::f32; }
  static std::size_t rank(const plain&) { return 1; }
  static std::int64_t extent(const plain& t, std::size_t) { return static_cast<std::int64_t>(t.v.size()); }
};

TEST_CASE("host_space: copy, fill, and the empty copies of null pointers") {
  const auto src = counting(100);
  std::vector<std::byte> dst(100, std::byte{0xee});
  host_space::copy(dst.data() + 10, src.data() + 20, 50);
  for (std::size_t i = 0; i < 100; ++i) {
    const std::byte want = i >= 10 && i < 60 ? src[i + 10] : std::byte{0xee};
    REQUIRE(dst[i] == want);
  }
  host_space::fill(dst.data() + 5, 3, std::byte{7});
  CHECK(dst[4] == std::byte{0xee});
  CHECK(dst[5] == std::byte{7});
  CHECK(dst[7] == std::byte{7});
  CHECK(dst[8] == std::byte{0xee});
  CHECK(dst[10] == src[20]);
  host_space::copy(nullptr, nullptr, 0);  // an empty span's data may be null
  host_space::fill(nullptr, 0);
}

TEST_CASE("host_space: gather and scatter are inverses over pieces of any size, empty ones too") {
  const auto src = counting(64, 3);
  const std::vector<const_segment> pieces{
      {src.data() + 40, 8}, {nullptr, 0}, {src.data() + 1, 5}, {src.data() + 20, 1}, {src.data() + 50, 14}};
  std::vector<std::byte> block(28);
  host_space::gather(pieces, block.data());
  std::vector<std::byte> expected;
  for (const auto& p : pieces)
    for (std::size_t i = 0; i < p.bytes; ++i) expected.push_back(p.data[i]);
  CHECK(block == expected);

  std::vector<std::byte> back(64, std::byte{0});
  const std::vector<segment> holes{{back.data() + 40, 8},
                                   {nullptr, 0},
                                   {back.data() + 1, 5},
                                   {back.data() + 20, 1},
                                   {back.data() + 50, 14}};
  host_space::scatter(block.data(), holes);
  for (const auto& p : pieces) {
    const auto at = static_cast<std::size_t>(p.data - src.data());
    if (p.bytes != 0) CHECK(std::memcmp(back.data() + at, src.data() + at, p.bytes) == 0);
  }
  CHECK(back[0] == std::byte{0});
  CHECK(redist::detail::total_bytes(std::span<const const_segment>(pieces)) == 28);
}

TEST_CASE("append_piece merges a piece that continues the last one and drops empty ones") {
  const auto src = counting(32);
  std::vector<const_segment> out;
  redist::detail::append_piece(out, const_segment{src.data(), 4});
  redist::detail::append_piece(out, const_segment{src.data() + 4, 6});  // continues: merged
  redist::detail::append_piece(out, const_segment{src.data() + 12, 0});
  redist::detail::append_piece(out, const_segment{src.data() + 12, 2});  // a gap: a new piece
  redist::detail::append_piece(out, const_segment{src.data(), 1});       // before: a new piece
  REQUIRE(out.size() == 3);
  CHECK((out[0].data == src.data() && out[0].bytes == 10));
  CHECK((out[1].data == src.data() + 12 && out[1].bytes == 2));
  CHECK((out[2].data == src.data() && out[2].bytes == 1));
}

TEST_CASE("host_space: float32 casts of a window of elements, every dtype, against per-value conversions") {
  // Values every dtype holds exactly and float32 represents exactly.
  const std::int64_t values[] = {0, 1, -2, 3, 100, -77, 5, 12};
  const dtype types[] = {dtype::f32, dtype::f64, dtype::f16, dtype::bf16, dtype::i8,
                         dtype::i16, dtype::i32, dtype::i64, dtype::u8,   dtype::boolean};
  for (const dtype t : types) {
    INFO(redist::name(t));
    const std::size_t elem = redist::size_of(t);
    std::vector<std::byte> array(8 * elem);
    auto value_of = [&](std::size_t i) -> float {
      const std::int64_t v = values[i];
      if (t == dtype::u8) return static_cast<float>(v < 0 ? -v : v);
      if (t == dtype::boolean) return v != 0 ? 1.0f : 0.0f;
      return static_cast<float>(v);
    };
    for (std::size_t i = 0; i < 8; ++i) {
      std::byte* at = array.data() + i * elem;
      const float f = value_of(i);
      switch (t) {
        case dtype::f32:
          std::memcpy(at, &f, 4);
          break;
        case dtype::f64: {
          const double d = f;
          std::memcpy(at, &d, 8);
          break;
        }
        case dtype::f16: {
          const auto h = redist::f32_to_f16(f);
          std::memcpy(at, &h, 2);
          break;
        }
        case dtype::bf16: {
          const auto h = redist::f32_to_bf16(f);
          std::memcpy(at, &h, 2);
          break;
        }
        case dtype::i8: {
          const auto x = static_cast<std::int8_t>(f);
          std::memcpy(at, &x, 1);
          break;
        }
        case dtype::i16: {
          const auto x = static_cast<std::int16_t>(f);
          std::memcpy(at, &x, 2);
          break;
        }
        case dtype::i32: {
          const auto x = static_cast<std::int32_t>(f);
          std::memcpy(at, &x, 4);
          break;
        }
        case dtype::i64: {
          const auto x = static_cast<std::int64_t>(f);
          std::memcpy(at, &x, 8);
          break;
        }
        case dtype::u8: {
          const auto x = static_cast<std::uint8_t>(f);
          std::memcpy(at, &x, 1);
          break;
        }
        case dtype::boolean: {
          const bool x = f != 0.0f;
          std::memcpy(at, &x, 1);
          break;
        }
      }
    }
    // Elements [2, 7) cast to float32, then back into a fresh array at the same place.
    std::vector<std::byte> wire(5 * 4);
    host_space::to_f32(t, array.data(), 2, 5, wire.data());
    for (std::size_t i = 0; i < 5; ++i) {
      float f;
      std::memcpy(&f, wire.data() + 4 * i, 4);
      CHECK(f == value_of(i + 2));
    }
    std::vector<std::byte> back(8 * elem, std::byte{0x5a});
    host_space::from_f32(t, wire.data(), 2, 5, back.data());
    CHECK(std::memcmp(back.data() + 2 * elem, array.data() + 2 * elem, 5 * elem) == 0);
    CHECK(back[0] == std::byte{0x5a});
    CHECK(back[7 * elem] == std::byte{0x5a});
  }
}

TEST_CASE("host_space: casting back saturates integers and maps NaN to 0") {
  const float in[] = {1e10f, -1e10f, std::numeric_limits<float>::quiet_NaN(), 3.0f};
  std::int8_t out[4] = {};
  host_space::from_f32(dtype::i8, reinterpret_cast<const std::byte*>(in), 0, 4,
                       reinterpret_cast<std::byte*>(out));
  CHECK(out[0] == 127);
  CHECK(out[1] == -128);
  CHECK(out[2] == 0);
  CHECK(out[3] == 3);
}

TEST_CASE("a tensor type's memory space: from its traits, host when they say nothing") {
  static_assert(redist::tensor_space<redist::host_tensor> == redist::memory_space::host);
  static_assert(std::is_same_v<redist::space_of<redist::host_tensor>, host_space>);
  static_assert(redist::tensor_like<plain>);
  static_assert(redist::tensor_space<plain> == redist::memory_space::host);
  // Traits without a space work where host tensors do: a batch of them validates.
  plain t{{1, 2, 3}};
  redist::sequence_batch<plain> b({7}, {{"x", dtype::f32, {}, {{3}}, std::move(t)}});
  CHECK_NOTHROW(b.validate());
  CHECK(b.sample_bytes("x", 0).size == 12);
}
