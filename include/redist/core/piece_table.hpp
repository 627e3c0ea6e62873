// Piece tables: the many small copies and float32 casts of one step, cut into tiles so that one kernel
// launch moves them all (one warp per tile, a binary search from tile to piece). The index arithmetic and
// the work of one lane are plain functions shared by the CUDA kernels and the host build, which tests them
// on one process against the host memory space.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/element_cast.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/detail/host_device.hpp"

namespace redist::detail {

inline constexpr unsigned tile_lanes = 32;            // a warp
inline constexpr std::size_t copy_tile_bytes = 4096;  // 8 vectors of 16 bytes per lane
inline constexpr std::size_t cast_tile_elements = 1024;

REDIST_HOST_DEVICE constexpr std::size_t tiles_of(std::size_t units, std::size_t tile) noexcept {
  return (units + tile - 1) / tile;
}
REDIST_HOST_DEVICE constexpr std::size_t tile_units(const copy_piece& p) noexcept { return p.bytes; }
REDIST_HOST_DEVICE constexpr std::size_t tile_units(const cast_piece& p) noexcept { return p.count + p.pad; }
template <class Piece>
inline constexpr std::size_t tile_size =
    std::is_same_v<Piece, copy_piece> ? copy_tile_bytes : cast_tile_elements;

// prefix[i] = the tiles of pieces [0, i), n + 1 entries; returns the total.
template <class Piece>
std::size_t tile_prefix(std::span<const Piece> pieces, std::vector<std::size_t>& prefix) {
  prefix.resize(pieces.size() + 1);
  std::size_t tiles = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    prefix[i] = tiles;
    tiles += tiles_of(tile_units(pieces[i]), tile_size<Piece>);
  }
  prefix[pieces.size()] = tiles;
  return tiles;
}

// The piece that tile `tile` (< prefix[n]) belongs to, and the tile's place in it: the last piece whose
// first tile is at most `tile`, which skips pieces without tiles.
struct tile_place {
  std::size_t piece;
  std::size_t index;  // of the tile within its piece
};
REDIST_HOST_DEVICE constexpr tile_place locate(const std::size_t* prefix, std::size_t n,
                                               std::size_t tile) noexcept {
  std::size_t lo = 0, hi = n;  // the answer lies in [lo, hi)
  while (hi - lo > 1) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (prefix[mid] <= tile)
      lo = mid;
    else
      hi = mid;
  }
  return {lo, tile - prefix[lo]};
}

// How a range of bytes is moved: `head` bytes one at a time up to a 16-byte boundary of the destination,
// `vectors` 16-byte vectors when source and destination are then both aligned (else none), the rest one
// byte at a time.
struct byte_split {
  std::size_t head;
  std::size_t vectors;
};
REDIST_HOST_DEVICE constexpr byte_split split_for_vectors(std::uintptr_t src, std::uintptr_t dst,
                                                          std::size_t bytes) noexcept {
  if (((src ^ dst) & 15u) != 0) return {bytes, 0};
  const std::size_t head = (16u - (dst & 15u)) & 15u;
  if (head >= bytes) return {bytes, 0};
  return {head, (bytes - head) / 16};
}

// A 16-byte vector, which the device moves in one instruction; the host build moves its bytes.
struct alignas(16) vector16 {
  std::uint32_t w[4];
};
REDIST_HOST_DEVICE inline void move16(std::byte* dst, const std::byte* src) noexcept {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<vector16*>(dst) = *reinterpret_cast<const vector16*>(src);
#else
  for (int i = 0; i < 16; ++i) dst[i] = src[i];
#endif
}

REDIST_HOST_DEVICE inline void zero16(std::byte* dst) noexcept {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<vector16*>(dst) = vector16{};
#else
  for (int i = 0; i < 16; ++i) dst[i] = std::byte{0};
#endif
}

// Lane `lane` of tile_lanes copies its share of tile `index` of piece p (or writes zeros, for a piece
// without a source): lanes take consecutive bytes and vectors, so a warp's accesses coalesce.
REDIST_HOST_DEVICE inline void copy_tile(const copy_piece& p, std::size_t index, unsigned lane) noexcept {
  const std::size_t begin = index * copy_tile_bytes;
  const std::size_t end = p.bytes - begin < copy_tile_bytes ? p.bytes : begin + copy_tile_bytes;
  std::byte* dst = p.dst + begin;
  const std::size_t bytes = end - begin;
  if (p.src == nullptr) {
    const auto at = reinterpret_cast<std::uintptr_t>(dst);
    const byte_split z = split_for_vectors(at, at, bytes);
    for (std::size_t i = lane; i < z.head; i += tile_lanes) dst[i] = std::byte{0};
    for (std::size_t i = lane; i < z.vectors; i += tile_lanes) zero16(dst + z.head + 16 * i);
    for (std::size_t i = z.head + z.vectors * 16 + lane; i < bytes; i += tile_lanes) dst[i] = std::byte{0};
    return;
  }
  const std::byte* src = p.src + begin;
  const byte_split s =
      split_for_vectors(reinterpret_cast<std::uintptr_t>(src), reinterpret_cast<std::uintptr_t>(dst), bytes);
  for (std::size_t i = lane; i < s.head; i += tile_lanes) dst[i] = src[i];
  for (std::size_t i = lane; i < s.vectors; i += tile_lanes)
    move16(dst + s.head + 16 * i, src + s.head + 16 * i);
  for (std::size_t i = s.head + s.vectors * 16 + lane; i < bytes; i += tile_lanes) dst[i] = src[i];
}

// Lane `lane` casts its share of tile `index` of piece p: elements lane, lane + 32, ... of the tile.
template <cast_direction D>
REDIST_HOST_DEVICE inline void cast_tile(const cast_piece& p, std::size_t index, unsigned lane) noexcept {
  const std::size_t begin = index * cast_tile_elements;
  const std::size_t units = tile_units(p);
  const std::size_t end = units - begin < cast_tile_elements ? units : begin + cast_tile_elements;
  visit_dtype(p.type, [&](auto zero) {
    using T = decltype(zero);
    for (std::size_t i = begin + lane; i < end; i += tile_lanes) {
      if constexpr (D == cast_direction::to_f32) {
        const float f = i < p.count ? cast_to_f32(load_as<T>(p.src + (p.first + i) * sizeof(T))) : 0.0f;
        store_as<float>(p.dst + i * sizeof(float), f);
      } else if (i < p.count) {
        store_as<T>(p.dst + (p.first + i) * sizeof(T),
                    cast_from_f32<T>(load_as<float>(p.src + i * sizeof(float))));
      }
    }
  });
}

// Whether lane `lane`'s share of tile `index` of piece p (elements [first, first + count) of a dtype `type`
// array at src) holds a value that float32 would change: the device's loss check, a piece of the table
// found lossy when any lane of any of its tiles says so.
REDIST_HOST_DEVICE inline bool lossy_in_tile(const cast_piece& p, std::size_t index, unsigned lane) noexcept {
  const std::size_t begin = index * cast_tile_elements;
  const std::size_t end = p.count - begin < cast_tile_elements ? p.count : begin + cast_tile_elements;
  bool lossy = false;
  visit_dtype(p.type, [&](auto zero) {
    using T = decltype(zero);
    for (std::size_t i = begin + lane; i < end; i += tile_lanes)
      lossy = lossy || !survives_f32_value(load_as<T>(p.src + (p.first + i) * sizeof(T)));
  });
  return lossy;
}

// ---- building tables on the host ----

// The pieces one after another into one block at `to` (a gather), or one block spread over them (a scatter).
inline void gather_table(std::span<const const_segment> pieces, std::byte* to, std::vector<copy_piece>& out) {
  for (const auto& s : pieces) {
    if (s.bytes != 0) out.push_back({s.data, to, s.bytes});
    to += s.bytes;
  }
}
inline void scatter_table(const std::byte* from, std::span<const segment> pieces,
                          std::vector<copy_piece>& out) {
  for (const auto& s : pieces) {
    if (s.bytes != 0) out.push_back({from, s.data, s.bytes});
    from += s.bytes;
  }
}

// The bytes of the pieces `from` into the pieces `to`, in order, however the two lists are cut (their
// totals are equal): one copy per overlap of a source piece and a destination piece.
inline void cross_table(std::span<const const_segment> from, std::span<const segment> to,
                        std::vector<copy_piece>& out) {
  for_each_overlap(from, to, [&](std::byte* d, const std::byte* src, std::size_t n) {
    out.push_back({src, d, n});
  });
}

// Runs a table on the host as a launch would on the device, tile by tile and lane by lane: what the tests
// compare with the host memory space.
template <class Piece, class Tile>
void run_table_on_host(std::span<const Piece> pieces, Tile tile) {
  std::vector<std::size_t> prefix;
  const std::size_t tiles = tile_prefix(pieces, prefix);
  for (std::size_t t = 0; t < tiles; ++t) {
    const tile_place at = locate(prefix.data(), pieces.size(), t);
    for (unsigned lane = 0; lane < tile_lanes; ++lane) tile(pieces[at.piece], at.index, lane);
  }
}

}  // namespace redist::detail
