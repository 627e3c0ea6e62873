// redist::detail::copy_list: the byte copies and float32 casts of one phase of a step (packing a round's
// sends, unpacking what arrived, filling a result), collected and then made in one go by the memory space:
// one table, and on a device one kernel launch, however many pieces.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/memory_space.hpp"

namespace redist::detail {

class copy_list {
 public:
  // n bytes from src to dst.
  void copy(std::byte* dst, const std::byte* src, std::size_t n) {
    if (n != 0) copies_.push_back({src, dst, n});
  }
  // n zero bytes at dst (padding), in the table of copies.
  void zero(std::byte* dst, std::size_t n) {
    if (n != 0) copies_.push_back({nullptr, dst, n});
  }
  // Elements [first, first + count) of a dtype t array at src cast to float32 at dst, and back.
  void to_f32(dtype t, const std::byte* src, std::size_t first, std::size_t count, std::byte* dst) {
    if (count != 0) to_f32_.push_back({src, dst, first, count, 0, t});
  }
  void from_f32(dtype t, const std::byte* src, std::size_t first, std::size_t count, std::byte* dst) {
    if (count != 0) from_f32_.push_back({src, dst, first, count, 0, t});
  }

  bool empty() const noexcept { return copies_.empty() && to_f32_.empty() && from_f32_.empty(); }

  // Makes every copy and cast listed, in `space`, and forgets them (keeping the lists' memory).
  template <class Space>
  void run(const Space& space) {
    if (!copies_.empty()) space.run(std::span<const copy_piece>(copies_));
    if (!to_f32_.empty()) space.run(std::span<const cast_piece>(to_f32_), cast_direction::to_f32);
    if (!from_f32_.empty()) space.run(std::span<const cast_piece>(from_f32_), cast_direction::from_f32);
    copies_.clear();
    to_f32_.clear();
    from_f32_.clear();
  }

 private:
  std::vector<copy_piece> copies_;
  std::vector<cast_piece> to_f32_, from_f32_;
};

// The copies of a phase made as they are listed, for host memory where a table buys nothing (and costs its
// allocation): copy_list's interface, run() a no-op.
struct direct_copies {
  static void copy(std::byte* dst, const std::byte* src, std::size_t n) noexcept {
    host_space::copy(dst, src, n);
  }
  static void zero(std::byte* dst, std::size_t n) noexcept { host_space::fill(dst, n); }
  static void run(const host_space&) noexcept {}
};

// How an op that lists a phase's copies makes them in a memory space: at once in host memory, as one table
// in a device space.
template <class Space>
using phase_copies = std::conditional_t<Space::space == memory_space::host, direct_copies, copy_list>;

}  // namespace redist::detail
