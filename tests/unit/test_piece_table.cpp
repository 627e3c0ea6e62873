// Unit tests of the piece tables (core/piece_table.hpp) that the CUDA kernels run: tile prefixes and the
// tile-to-piece search against a brute-force count, the split of a range into bytes and 16-byte vectors,
// and whole tables run lane by lane on the host, compared byte for byte with the host memory space's
// gathers, scatters, cross copies and float32 casts, at every alignment and for every dtype.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/piece_table.hpp"
#include "splitmix.hpp"

namespace {

using redist::const_segment;
using redist::dtype;
using redist::host_space;
using redist::segment;
namespace d = redist::detail;

std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(redist::test::draw(seed, i) & 0xff);
  return v;
}

void run_copies(std::span<const d::copy_piece> table) {
  d::run_table_on_host(
      table, [](const d::copy_piece& p, std::size_t index, unsigned lane) { d::copy_tile(p, index, lane); });
}

}  // namespace

TEST_CASE("piece tables: every tile is found in its piece, pieces without tiles skipped") {
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<d::copy_piece> pieces;
    for (std::size_t i = 0; i < 1 + seed * 7; ++i)
      pieces.push_back({nullptr, nullptr, redist::test::piece_size(seed, i, 3 * d::copy_tile_bytes + 100)});
    std::vector<std::size_t> prefix;
    const std::size_t tiles = d::tile_prefix(std::span<const d::copy_piece>(pieces), prefix);
    std::size_t t = 0;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const std::size_t mine = (pieces[i].bytes + d::copy_tile_bytes - 1) / d::copy_tile_bytes;
      for (std::size_t k = 0; k < mine; ++k, ++t) {
        const d::tile_place at = d::locate(prefix.data(), pieces.size(), t);
        REQUIRE(at.piece == i);
        REQUIRE(at.index == k);
      }
    }
    CHECK(t == tiles);
  }
}

TEST_CASE("piece tables: a range splits into a head, aligned vectors and a tail") {
  for (std::uintptr_t src = 0; src < 32; ++src) {
    for (std::uintptr_t dst = 0; dst < 32; ++dst) {
      for (std::size_t bytes : {0u, 1u, 15u, 16u, 17u, 40u, 100u}) {
        const d::byte_split s = d::split_for_vectors(src, dst, bytes);
        REQUIRE(s.head + 16 * s.vectors <= bytes);
        if (s.vectors != 0) {
          REQUIRE((src + s.head) % 16 == 0);
          REQUIRE((dst + s.head) % 16 == 0);
          REQUIRE(bytes - s.head - 16 * s.vectors < 16);
        }
        // Equal alignments with room for a vector after the head always get vectors.
        if ((src - dst) % 16 == 0 && bytes >= 16 + (16 - dst % 16) % 16) REQUIRE(s.vectors != 0);
      }
    }
  }
}

TEST_CASE("piece tables: gather, scatter and cross tables match the host space at every alignment") {
  for (std::uint64_t seed = 0; seed < 12; ++seed) {
    const std::size_t n = 3 + seed * 11;
    std::vector<std::size_t> sizes(n);
    std::size_t total = 0;
    for (std::size_t i = 0; i < n; ++i)
      total += sizes[i] = redist::test::piece_size(seed + 100, i, 3 * d::copy_tile_bytes + 100);
    const std::size_t slack = 64;
    const auto src = random_bytes(total + n * slack, seed);
    // Pieces at shifting offsets so that source and block alignments differ and agree in turn.
    std::vector<const_segment> from;
    std::size_t at = 0;
    for (std::size_t i = 0; i < n; ++i) {
      at += redist::test::draw(seed, i, 2) % slack;
      from.push_back({src.data() + at, sizes[i]});
      at += sizes[i];
    }
    const std::size_t shift = seed % 16;
    std::vector<std::byte> want(total + 16, std::byte{0}), got(total + 16, std::byte{0});
    host_space::gather(from, want.data() + shift);
    std::vector<d::copy_piece> table;
    d::gather_table(from, got.data() + shift, table);
    run_copies(table);
    REQUIRE(got == want);  // both zero outside the block

    // Scatter the block back into pieces of a second buffer.
    std::vector<std::byte> back_want(src.size(), std::byte{0x5a}), back_got(src.size(), std::byte{0x5a});
    std::vector<segment> to_want, to_got;
    for (const auto& s : from) {
      const auto off = static_cast<std::size_t>(s.data - src.data());
      to_want.push_back({back_want.data() + off, s.bytes});
      to_got.push_back({back_got.data() + off, s.bytes});
    }
    host_space::scatter(want.data() + shift, to_want);
    table.clear();
    d::scatter_table(got.data() + shift, to_got, table);
    run_copies(table);
    REQUIRE(back_got == back_want);

    // Cross copy: the same bytes into destination pieces cut elsewhere.
    std::vector<segment> cut_want, cut_got;
    std::vector<std::byte> dst_want(total + 2 * n, std::byte{1}), dst_got(total + 2 * n, std::byte{1});
    std::size_t left = total, pos = 0;
    for (std::size_t i = 0; left != 0; ++i) {
      const std::size_t len =
          std::min(left, redist::test::piece_size(seed + 200, i, 3 * d::copy_tile_bytes + 100));
      cut_want.push_back({dst_want.data() + pos, len});
      cut_got.push_back({dst_got.data() + pos, len});
      pos += len + 1;
      left -= len;
    }
    host_space::copy_pieces(from, cut_want);
    table.clear();
    d::cross_table(from, cut_got, table);
    run_copies(table);
    REQUIRE(dst_got == dst_want);
  }
}

TEST_CASE("piece tables: pieces without a source write zeros at every alignment, as the host space does") {
  for (std::uint64_t seed = 0; seed < 12; ++seed) {
    const std::size_t n = 2 + seed * 5;
    std::vector<std::size_t> lens(n);
    std::size_t longest = 0, total = 0;
    for (std::size_t i = 0; i < n; ++i) {
      lens[i] = redist::test::piece_size(seed + 300, i, 3 * d::copy_tile_bytes + 100);
      longest = std::max(longest, lens[i]);
      total += lens[i] + 40 + 64;
    }
    const auto src_bytes = random_bytes(longest + 64, seed + 1);
    auto want = random_bytes(total, seed);
    auto got = want;
    std::vector<d::copy_piece> want_table, got_table;
    std::size_t at = 0;
    for (std::size_t i = 0; i < n; ++i) {
      at += redist::test::draw(seed, i, 5) % 40;
      const std::size_t len = lens[i];
      // Copies and zero pieces interleaved, as a packing with padding lists them.
      const std::byte* src = i % 2 == 0 ? nullptr : src_bytes.data() + (at + len) % 64;
      want_table.push_back({src, want.data() + at, len});
      got_table.push_back({src, got.data() + at, len});
      at += len + 64;
    }
    host_space::run(want_table);
    run_copies(got_table);
    REQUIRE(got == want);
    for (const auto& p : want_table)
      if (p.src == nullptr)
        REQUIRE(std::all_of(p.dst, p.dst + p.bytes, [](std::byte b) { return b == std::byte{0}; }));
  }
}

TEST_CASE("piece tables: float32 casts and their padding match the host space for every dtype") {
  for (std::size_t k = 0; k < redist::dtype_count; ++k) {
    const auto t = static_cast<dtype>(k);
    CAPTURE(redist::name(t));
    const std::size_t es = redist::size_of(t);
    for (std::uint64_t seed = 0; seed < 6; ++seed) {
      // Random bits, made valid where a dtype has invalid patterns (bool).
      auto array = random_bytes(5000 * es + 8, seed * 31 + k);
      if (t == dtype::boolean)
        for (auto& b : array) b = b & std::byte{1};
      const std::size_t first = redist::test::draw(seed, 3) % 700;
      const std::size_t count = redist::test::draw(seed, 4) % 3000;
      const std::size_t pad = seed % 2 == 0 ? 0 : redist::test::draw(seed, 5) % 2000;
      const std::size_t odd = seed % 3;  // the array starts off its type's alignment
      const std::byte* src = array.data() + odd;

      std::vector<std::byte> want((count + pad) * 4 + 4, std::byte{0x77}), got(want.size(), std::byte{0x77});
      host_space::to_f32(t, src, first, count, want.data() + odd);
      host_space::fill(want.data() + odd + count * 4, pad * 4);
      const d::cast_piece to{src, got.data() + odd, first, count, pad, t};
      d::run_table_on_host(std::span(&to, 1), [](const d::cast_piece& p, std::size_t index, unsigned lane) {
        d::cast_tile<d::cast_direction::to_f32>(p, index, lane);
      });
      REQUIRE(got == want);

      std::vector<std::byte> back_want(array.size(), std::byte{0x33}),
          back_got(array.size(), std::byte{0x33});
      host_space::from_f32(t, want.data() + odd, first, count, back_want.data() + odd);
      const d::cast_piece from{got.data() + odd, back_got.data() + odd, first, count, pad, t};
      d::run_table_on_host(std::span(&from, 1), [](const d::cast_piece& p, std::size_t index, unsigned lane) {
        d::cast_tile<d::cast_direction::from_f32>(p, index, lane);
      });
      REQUIRE(back_got == back_want);
    }
  }
}

TEST_CASE("piece tables: the loss check finds the first lossy piece, as the host space does") {
  for (const dtype t : {dtype::i32, dtype::i64, dtype::f64, dtype::bf16}) {
    CAPTURE(redist::name(t));
    const std::size_t es = redist::size_of(t);
    for (std::uint64_t seed = 0; seed < 10; ++seed) {
      const std::size_t n = 1 + seed * 3;
      std::vector<std::size_t> counts(n);
      std::size_t total = 0;
      for (std::size_t i = 0; i < n; ++i) total += counts[i] = redist::test::piece_size(seed, i, 3000);
      std::vector<std::byte> values(total * es + 8, std::byte{0});  // zeros survive
      // A lossy value in one piece after the first, at a drawn element (none at all for some seeds).
      const std::size_t planted = seed % 4 == 0 ? n : 1 + redist::test::draw(seed, 1) % n;
      std::vector<d::cast_piece> table;
      std::size_t at = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t first = redist::test::draw(seed, i, 2) % 3;  // within the piece's array
        const std::size_t count = counts[i] > first ? counts[i] - first : 0;
        table.push_back({values.data() + at * es, nullptr, first, count, 0, t});
        if (i == planted % n && planted < n && count != 0) {
          std::byte* e = values.data() + (at + first + redist::test::draw(seed, 3) % count) * es;
          if (t == dtype::i32) d::store_as<std::int32_t>(e, (1 << 24) + 1);
          if (t == dtype::i64) d::store_as<std::int64_t>(e, (std::int64_t{1} << 40) + 1);
          if (t == dtype::f64) d::store_as<double>(e, 0.1);
          if (t == dtype::bf16) d::store_as<redist::bf16>(e, redist::bf16{0x7fc1});  // a NaN survives
        }
        at += counts[i];
      }
      std::size_t found = table.size();
      d::run_table_on_host(std::span<const d::cast_piece>(table),
                           [&](const d::cast_piece& p, std::size_t index, unsigned lane) {
                             const auto i = static_cast<std::size_t>(&p - table.data());
                             if (d::lossy_in_tile(p, index, lane)) found = std::min(found, i);
                           });
      REQUIRE(found == host_space::first_lossy_piece(table));
      const bool lossy = planted < n && table[planted].count != 0 && t != dtype::bf16;
      REQUIRE(found == (lossy ? planted : n));
    }
  }
}
