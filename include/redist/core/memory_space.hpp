// Memory spaces: where a tensor's bytes live (redist::memory_space, in a tensor's traits), the pieces of
// memory the library moves, and the policy of each space that makes every byte copy the library makes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/element_cast.hpp"

namespace redist {

// Where a tensor's bytes live: host memory can be touched by the CPU and MPI; device memory needs NCCL or a
// copy.
enum class memory_space : std::uint8_t { host, device };

// A piece of memory that is sent or read (const_segment) or received into or written (segment): `bytes` bytes
// at `data`.
struct const_segment {
  const std::byte* data;
  std::size_t bytes;
};

struct segment {
  std::byte* data;
  std::size_t bytes;
};

namespace detail {

// One copy of a table: bytes bytes from src to dst, or bytes zero bytes at dst when src is null (see
// host_space::run).
struct copy_piece {
  const std::byte* src;
  std::byte* dst;
  std::size_t bytes;
};

// One float32 cast of a table. to_f32: elements [first, first + count) of a dtype `type` array at src cast
// to count floats at dst, followed by pad zero floats. from_f32: count floats at src cast back into elements
// [first, first + count) of the array at dst (pad is ignored).
enum class cast_direction : std::uint8_t { to_f32, from_f32 };
struct cast_piece {
  const std::byte* src;
  std::byte* dst;
  std::size_t first;
  std::size_t count;
  std::size_t pad;
  dtype type;
};

// Adds a piece to a list, merged into the last one when it continues it: pieces adjacent in memory then move
// as one block. Empty pieces are dropped.
template <class Segment>
void append_piece(std::vector<Segment>& out, Segment s) {
  if (s.bytes == 0) return;
  if (!out.empty() && out.back().data + out.back().bytes == s.data) {
    out.back().bytes += s.bytes;
  } else {
    out.push_back(s);
  }
}

// Calls f(to, from, n) for every overlap of a source piece with a destination piece, in order: the bytes of
// the pieces `from` into the pieces `to`, however the two lists are cut (their totals are equal).
template <class F>
void for_each_overlap(std::span<const const_segment> from, std::span<const segment> to, F f) {
  std::size_t piece = 0, offset = 0;  // within from[piece]
  for (const segment& r : to) {
    for (std::size_t done = 0; done < r.bytes;) {
      while (from[piece].bytes == offset) {
        ++piece;
        offset = 0;
      }
      const std::size_t n = std::min(from[piece].bytes - offset, r.bytes - done);
      f(r.data + done, from[piece].data + offset, n);
      done += n;
      offset += n;
    }
  }
}

template <class Segment>
std::size_t total_bytes(std::span<const Segment> pieces) noexcept {
  std::size_t n = 0;
  for (const auto& s : pieces) n += s.bytes;
  return n;
}

// Checks whole blocks with a fixed-count, branch-free inner loop (which compilers vectorize); the scalar
// loop then finds the exact index inside the first failing block, or checks the tail.
template <class T, class Survives>
std::size_t first_lossy_in(const void* data, std::size_t count, Survives survives) noexcept {
  constexpr std::size_t block = 256;
  const auto* bytes = static_cast<const unsigned char*>(data);
  const auto at = [bytes](std::size_t i) {
    T v;
    std::memcpy(&v, bytes + i * sizeof(T), sizeof(T));
    return v;
  };
  std::size_t i = 0;
  for (; count - i >= block; i += block) {
    unsigned lossy = 0;  // an integer, not a bool: compilers vectorize integer OR reductions
    for (std::size_t j = 0; j < block; ++j) lossy |= survives(at(i + j)) ? 0u : 1u;
    if (lossy != 0) break;
  }
  for (; i < count; ++i) {
    if (!survives(at(i))) return i;
  }
  return count;
}

}  // namespace detail

// Index of the first of `count` elements of type t at `data` (aligned for t) that would not come back with
// the same value from a trip through float32, or `count` if every one does. f32, f16, bf16, i8, i16, u8 and
// bool always survive (a NaN stays a NaN, though a signalling one comes back quiet); i32/i64 survive when
// exactly representable in a float; f64 when (double)(float)x == x, or x is NaN or infinite.
inline std::size_t first_lossy_f32(dtype t, const void* data, std::size_t count) noexcept {
  switch (t) {
    case dtype::i32:
      return detail::first_lossy_in<std::int32_t>(data, count,
                                                  [](std::int32_t v) { return detail::int_survives_f32(v); });
    case dtype::i64:
      return detail::first_lossy_in<std::int64_t>(data, count,
                                                  [](std::int64_t v) { return detail::int_survives_f32(v); });
    case dtype::f64:
      return detail::first_lossy_in<double>(data, count,
                                            [](double v) { return detail::f64_survives_f32(v); });
    case dtype::f32:
    case dtype::f16:
    case dtype::bf16:
    case dtype::i8:
    case dtype::i16:
    case dtype::u8:
    case dtype::boolean:
      return count;
  }
  return count;
}

// Whether the one element of type t at `element` survives a trip through float32 (see first_lossy_f32).
inline bool survives_f32(dtype t, const void* element) noexcept {
  return first_lossy_f32(t, element, 1) == 1;
}

// The host memory space: the CPU copies with memcpy. The only code of the library that copies tensor bytes
// (the codecs of metadata aside); a device space offers the same operations, on a stream.
struct host_space {
  static constexpr memory_space space = memory_space::host;

  static void copy(std::byte* to, const std::byte* from, std::size_t n) noexcept {
    if (n != 0) std::memcpy(to, from, n);
  }
  static void fill(std::byte* to, std::size_t n, std::byte value = std::byte{0}) noexcept {
    if (n != 0) std::memset(to, static_cast<int>(value), n);
  }
  // The pieces one after another into one block at `to`.
  static void gather(std::span<const const_segment> pieces, std::byte* to) noexcept {
    for (const auto& s : pieces) {
      copy(to, s.data, s.bytes);
      to += s.bytes;
    }
  }
  // One block at `from` spread over the pieces, in order.
  static void scatter(const std::byte* from, std::span<const segment> pieces) noexcept {
    for (const auto& s : pieces) {
      copy(s.data, from, s.bytes);
      from += s.bytes;
    }
  }

  // The bytes of the pieces `from` into the pieces `to`, in order, however the two lists are cut; their
  // totals are equal.
  static void copy_pieces(std::span<const const_segment> from, std::span<const segment> to) noexcept {
    detail::for_each_overlap(from, to, copy);
  }

  // A whole table of copies, or of casts one way (a device space runs each in one kernel launch).
  static void run(std::span<const detail::copy_piece> table) noexcept {
    for (const auto& p : table) {
      if (p.src != nullptr)
        copy(p.dst, p.src, p.bytes);
      else
        fill(p.dst, p.bytes);
    }
  }
  static void run(std::span<const detail::cast_piece> table, detail::cast_direction d) noexcept {
    for (const auto& p : table) {
      if (d == detail::cast_direction::from_f32) {
        from_f32(p.type, p.src, p.first, p.count, p.dst);
        continue;
      }
      to_f32(p.type, p.src, p.first, p.count, p.dst);
      fill(p.dst + p.count * sizeof(float), p.pad * sizeof(float));
    }
  }

  // The first piece of a table of pieces to check (a cast_piece's src, first, count and type) that holds a
  // value float32 would change, or table.size(): the loss check of float32 staging, one launch on a device.
  static std::size_t first_lossy_piece(std::span<const detail::cast_piece> table) noexcept {
    for (std::size_t i = 0; i < table.size(); ++i) {
      const auto& p = table[i];
      if (first_lossy_f32(p.type, p.src + p.first * size_of(p.type), p.count) != p.count) return i;
    }
    return table.size();
  }

  // n bytes of this space's memory at `from` into host memory at `to`, complete on return (what the host
  // reads of a result: a device space waits for its stream).
  static void to_host(std::byte* to, const std::byte* from, std::size_t n) noexcept { copy(to, from, n); }
  // n bytes of host memory at `from` into this space's memory at `to`; `from` may be reused on return.
  static void from_host(std::byte* to, const std::byte* from, std::size_t n) noexcept { copy(to, from, n); }

  // Staging memory of this space: uninitialized, aligned for any element type.
  static std::byte* allocate(std::size_t n) {
    return n == 0 ? nullptr : static_cast<std::byte*>(::operator new[](n, std::align_val_t{64}));
  }
  static void deallocate(std::byte* p, std::size_t) noexcept {
    if (p != nullptr) ::operator delete[](p, std::align_val_t{64});
  }

  // Elements [first, first + n) of an array of dtype t at `src`, cast to n float32 values at `dst`.
  static void to_f32(dtype t, const std::byte* src, std::size_t first, std::size_t n,
                     std::byte* dst) noexcept {
    detail::visit_dtype(t, [&]<class T>(T) {
      for (std::size_t i = 0; i < n; ++i) {
        T v;
        std::memcpy(&v, src + (first + i) * sizeof(T), sizeof(T));
        const float f = detail::cast_to_f32(v);
        std::memcpy(dst + i * sizeof(float), &f, sizeof(float));
      }
    });
  }
  // n float32 values at `src` cast back to dtype t, into elements [first, first + n) of the array at `dst`.
  static void from_f32(dtype t, const std::byte* src, std::size_t first, std::size_t n,
                       std::byte* dst) noexcept {
    detail::visit_dtype(t, [&]<class T>(T) {
      for (std::size_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, src + i * sizeof(float), sizeof(float));
        const T v = detail::cast_from_f32<T>(f);
        std::memcpy(dst + (first + i) * sizeof(T), &v, sizeof(T));
      }
    });
  }
};

// The policy of a memory space; a device space is declared by the header that brings it.
template <memory_space S>
struct space_policy;
template <>
struct space_policy<memory_space::host> {
  using type = host_space;
};

}  // namespace redist
