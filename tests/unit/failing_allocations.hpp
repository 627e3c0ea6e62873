// Test helper: replaces the global operator new of the test executable that includes it, so that a test can
// make the n-th allocation from now throw std::bad_alloc and check the strong exception guarantee.
// Include it from exactly one translation unit of an executable.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace {
long allocations_left = -1;  // -1: never fail

// Arms the failure for its lifetime, so that an unexpected exception cannot leave it armed.
struct failing_allocations {
  explicit failing_allocations(long n) { allocations_left = n; }
  ~failing_allocations() { allocations_left = -1; }
  failing_allocations(const failing_allocations&) = delete;
  failing_allocations& operator=(const failing_allocations&) = delete;
};
}  // namespace

void* operator new(std::size_t size) {
  if (allocations_left == 0) throw std::bad_alloc();
  if (allocations_left > 0) --allocations_left;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
