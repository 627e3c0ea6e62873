// redist::detail::crc32c: the CRC-32C (Castagnoli) of a byte range, the end-to-end checksum of redistribute's
// payloads: the SSE 4.2 instruction on x86-64 CPUs that have it (three streams at once), else a table.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace redist::detail {

namespace crc32c_impl {

inline constexpr std::uint32_t poly = 0x82F63B78u;  // reflected Castagnoli polynomial

inline constexpr std::array<std::uint32_t, 256> table = [] {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? (c >> 1) ^ poly : c >> 1;
    t[i] = c;
  }
  return t;
}();

// The register after `n` more bytes, one table lookup each.
inline std::uint32_t by_table(std::uint32_t crc, const std::byte* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    crc = table[(crc ^ static_cast<std::uint8_t>(p[i])) & 0xff] ^ (crc >> 8);
  return crc;
}

// a * b modulo the polynomial, in the reflected bit order of the register (bit 31 is x^0).
constexpr std::uint32_t multiply(std::uint32_t a, std::uint32_t b) noexcept {
  std::uint32_t product = 0;
  for (std::uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
    if ((a & bit) != 0) product ^= b;
    b = (b & 1) != 0 ? (b >> 1) ^ poly : b >> 1;
  }
  return product;
}

// x^(8 * bytes) modulo the polynomial: what a register is multiplied by to move it past `bytes` zero bytes.
constexpr std::uint32_t shift_of(std::size_t bytes) noexcept {
  std::uint32_t power = 1u << 31;   // x^0
  std::uint32_t square = 1u << 30;  // x^1, then x^2, x^4, ...
  for (std::size_t bits = bytes * 8; bits != 0; bits >>= 1) {
    if ((bits & 1) != 0) power = multiply(power, square);
    square = multiply(square, square);
  }
  return power;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define REDIST_CRC32C_SSE42 1

// Blocks of three streams of `stream` bytes: the instruction's latency is three cycles and its throughput
// one, so three independent streams run it at full rate; their registers are joined by one multiply each.
inline constexpr std::size_t stream = std::size_t{8} << 10;
inline constexpr std::uint32_t stream_shift = shift_of(stream);

__attribute__((target("sse4.2"))) inline std::uint32_t by_instruction(std::uint32_t crc, const std::byte* p,
                                                                      std::size_t n) noexcept {
  auto word = [](const std::byte* at) {
    std::uint64_t w;
    std::memcpy(&w, at, 8);
    return w;
  };
  std::uint64_t c0 = crc;
  for (; n >= 3 * stream; n -= 3 * stream, p += 3 * stream) {
    std::uint64_t c1 = 0, c2 = 0;
    for (std::size_t i = 0; i < stream; i += 8) {
      c0 = __builtin_ia32_crc32di(c0, word(p + i));
      c1 = __builtin_ia32_crc32di(c1, word(p + stream + i));
      c2 = __builtin_ia32_crc32di(c2, word(p + 2 * stream + i));
    }
    c0 = multiply(static_cast<std::uint32_t>(c0), stream_shift) ^ c1;
    c0 = multiply(static_cast<std::uint32_t>(c0), stream_shift) ^ c2;
  }
  for (; n >= 8; n -= 8, p += 8) c0 = __builtin_ia32_crc32di(c0, word(p));
  auto c = static_cast<std::uint32_t>(c0);
  for (std::size_t i = 0; i < n; ++i) c = __builtin_ia32_crc32qi(c, static_cast<std::uint8_t>(p[i]));
  return c;
}

inline bool have_instruction() noexcept {
  static const bool have = __builtin_cpu_supports("sse4.2");
  return have;
}
#endif

}  // namespace crc32c_impl

// CRC-32C of bytes [data, data + n), continuing from `crc` (the CRC of the bytes before them; 0 to start):
// crc32c(crc32c(0, a), b) is the CRC of a followed by b.
inline std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t n) noexcept {
  const auto* p = static_cast<const std::byte*>(data);
  crc = ~crc;
#ifdef REDIST_CRC32C_SSE42
  if (crc32c_impl::have_instruction()) return ~crc32c_impl::by_instruction(crc, p, n);
#endif
  return ~crc32c_impl::by_table(crc, p, n);
}

// Whether crc32c() runs on the CPU's instruction here (else on a table, some ten times slower).
inline bool crc32c_in_hardware() noexcept {
#ifdef REDIST_CRC32C_SSE42
  return crc32c_impl::have_instruction();
#else
  return false;
#endif
}

}  // namespace redist::detail
