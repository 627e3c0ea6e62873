// The CUDA memory space's kernels: one launch runs a whole piece table (core/piece_table.hpp), or checks one
// for values float32 would change; one warp per tile, each warp finding its piece by binary search in the
// tile prefix. The per-lane work is the table's own shared functions, which the host build tests.
// Templates, so that every translation unit may include this header.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "redist/core/piece_table.hpp"

namespace redist::detail {

inline constexpr unsigned table_warps_per_block = 8;
inline constexpr unsigned table_threads_per_block = table_warps_per_block * tile_lanes;

// What a table does: copies (Piece = copy_piece), or float32 casts one way (Piece = cast_piece).
enum class table_op : unsigned char { copy, to_f32, from_f32 };

template <table_op Op, class Piece>
__global__ void __launch_bounds__(table_threads_per_block)
    table_kernel(const Piece* pieces, const std::size_t* prefix, std::size_t n, std::size_t tiles) {
  const std::size_t t =
      static_cast<std::size_t>(blockIdx.x) * table_warps_per_block + threadIdx.x / tile_lanes;
  if (t >= tiles) return;
  const tile_place at = locate(prefix, n, t);
  const unsigned lane = threadIdx.x % tile_lanes;
  if constexpr (Op == table_op::copy)
    copy_tile(pieces[at.piece], at.index, lane);
  else if constexpr (Op == table_op::to_f32)
    cast_tile<cast_direction::to_f32>(pieces[at.piece], at.index, lane);
  else
    cast_tile<cast_direction::from_f32>(pieces[at.piece], at.index, lane);
}

// The loss check of a table of pieces: the lowest piece with a lossy value lowers *first (which the caller
// set to all ones).
template <class Piece>
__global__ void __launch_bounds__(table_threads_per_block)
    lossy_kernel(const Piece* pieces, const std::size_t* prefix, std::size_t n, std::size_t tiles,
                 unsigned long long* first) {
  const std::size_t t =
      static_cast<std::size_t>(blockIdx.x) * table_warps_per_block + threadIdx.x / tile_lanes;
  if (t >= tiles) return;  // whole warps: t is the warp's
  const tile_place at = locate(prefix, n, t);
  const unsigned lane = threadIdx.x % tile_lanes;
  const bool lossy = lossy_in_tile(pieces[at.piece], at.index, lane);
  if (__any_sync(0xffffffffu, lossy) && lane == 0)
    atomicMin(first, static_cast<unsigned long long>(at.piece));
}

}  // namespace redist::detail
