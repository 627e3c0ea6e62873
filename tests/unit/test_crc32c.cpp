// Tests of redist::detail::crc32c: the published check values (the "123456789" check, RFC 3720's vectors),
// the instruction and the table agreeing on seeded random buffers of every length around the three-stream
// blocks, and a CRC continued over parts equal to the CRC of the whole.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "redist/detail/crc32c.hpp"
#include "splitmix.hpp"

namespace {

using redist::detail::crc32c;

std::vector<std::byte> filled(std::size_t n, unsigned value) {
  return std::vector<std::byte>(n, std::byte(value));
}

std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>(redist::test::mix(seed, i) & 0xff);
  return out;
}

// The same CRC by the table alone: the independent reference for the instruction's path.
std::uint32_t by_table(const std::vector<std::byte>& b) {
  return ~redist::detail::crc32c_impl::by_table(~0u, b.data(), b.size());
}

}  // namespace

TEST_CASE("crc32c: published check values") {
  constexpr std::string_view check = "123456789";
  CHECK(crc32c(0, check.data(), check.size()) == 0xE3069283u);
  CHECK(crc32c(0, nullptr, 0) == 0u);
  // RFC 3720, B.4: 32 bytes of zeros, of ones, ascending and descending.
  CHECK(crc32c(0, filled(32, 0).data(), 32) == 0x8A9136AAu);
  CHECK(crc32c(0, filled(32, 0xff).data(), 32) == 0x62A8AB43u);
  std::vector<std::byte> up(32), down(32);
  for (std::size_t i = 0; i < 32; ++i) {
    up[i] = static_cast<std::byte>(i);
    down[i] = static_cast<std::byte>(31 - i);
  }
  CHECK(crc32c(0, up.data(), 32) == 0x46DD794Eu);
  CHECK(crc32c(0, down.data(), 32) == 0x113FDB5Cu);
  CHECK(by_table(up) == 0x46DD794Eu);
}

TEST_CASE("crc32c: the instruction's three streams agree with the table, and CRCs continue over parts") {
  MESSAGE("CRC-32C in hardware here: " << redist::detail::crc32c_in_hardware());
  constexpr std::size_t block = 3 * (std::size_t{8} << 10);
  const std::uint64_t seed = 0x6372633332630001ull;
  INFO("seed=" << seed);
  for (const std::size_t n :
       {std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{9}, std::size_t{4095}, block - 1, block,
        block + 1, block + 13, 2 * block + 8, 5 * block + 3}) {
    CAPTURE(n);
    const auto b = random_bytes(n, seed + n);
    const std::uint32_t whole = crc32c(0, b.data(), n);
    CHECK(whole == by_table(b));
    for (const std::size_t cut : {std::size_t{0}, n / 3, n / 2 + 1, n}) {
      CAPTURE(cut);
      CHECK(crc32c(crc32c(0, b.data(), cut), b.data() + cut, n - cut) == whole);
    }
    auto flipped = b;
    flipped[n / 2] ^= std::byte{0x10};
    CHECK(crc32c(0, flipped.data(), n) != whole);
  }
}
