// Test helper for executables that replace the aligned array operator new (host tensors and host staging
// come from it) to make some allocations fail: the allocation itself, and the matching deletes.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace redist::test {

// What the replaced operator new[] returns when it lets an allocation through.
inline void* aligned_allocation(std::size_t size, std::align_val_t align) {
  const auto a = static_cast<std::size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a + (size == 0 ? a : 0))) return p;
  throw std::bad_alloc();
}

}  // namespace redist::test

// The deletes that match it (one definition per executable: include this header from one file only).
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
