// The copy and allocation counter's wrappers: __wrap_memcpy and __wrap_memmove (the linker sends the
// program's calls of memcpy and memmove here) and the replaced global operator new and delete, all counting
// while recording. Nothing here allocates: the logs are fixed arrays.
#include "copy_alloc_counter.hpp"

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

extern "C" {
void* __real_memcpy(void* to, const void* from, std::size_t n);
void* __real_memmove(void* to, const void* from, std::size_t n);
void* __wrap_memcpy(void* to, const void* from, std::size_t n);
void* __wrap_memmove(void* to, const void* from, std::size_t n);
}

namespace redist::test::copy_alloc_counter {
namespace {

// Atomic, relaxed: MPI may run threads of its own, and a count must never be torn; the order of two
// threads' entries in a log is whichever came first.
struct state {
  std::atomic<bool> on{false};
  std::atomic<std::uint64_t> copies{0}, copied_bytes{0}, largest_copy{0};
  std::atomic<std::uint64_t> allocations{0}, allocated_bytes{0}, largest_allocation{0};
  std::atomic<std::size_t> copy_entries{0}, allocation_entries{0};
  std::array<copy_record, log_limit> copy_log{};
  std::array<std::size_t, log_limit> allocation_log{};
};

// Constant-initialized, so it exists before any static constructor of the program allocates.
constinit state s;

void raise_to(std::atomic<std::uint64_t>& largest, std::uint64_t v) noexcept {
  std::uint64_t seen = largest.load(std::memory_order_relaxed);
  while (v > seen && !largest.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {
  }
}

void note_copy(void* to, const void* from, std::size_t n) noexcept {
  if (!s.on.load(std::memory_order_relaxed)) return;
  s.copies.fetch_add(1, std::memory_order_relaxed);
  s.copied_bytes.fetch_add(n, std::memory_order_relaxed);
  raise_to(s.largest_copy, n);
  const std::size_t at = s.copy_entries.fetch_add(1, std::memory_order_relaxed);
  if (at < log_limit) s.copy_log[at] = {to, from, n};
}

void note_allocation(std::size_t n) noexcept {
  if (!s.on.load(std::memory_order_relaxed)) return;
  s.allocations.fetch_add(1, std::memory_order_relaxed);
  s.allocated_bytes.fetch_add(n, std::memory_order_relaxed);
  raise_to(s.largest_allocation, n);
  const std::size_t at = s.allocation_entries.fetch_add(1, std::memory_order_relaxed);
  if (at < log_limit) s.allocation_log[at] = n;
}

// What the standard asks of a replaceable operator new: retry through the new-handler, else bad_alloc.
void* allocate(std::size_t n, std::size_t align) {
  for (;;) {
    void* p = nullptr;
    if (align <= alignof(std::max_align_t))
      p = std::malloc(n == 0 ? 1 : n);
    else
      p = std::aligned_alloc(align, (n + align - 1) / align * align + (n == 0 ? align : 0));
    if (p != nullptr) {
      note_allocation(n);
      return p;
    }
    const std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* allocate_nothrow(std::size_t n, std::size_t align) noexcept {
  try {
    return allocate(n, align);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

void start() noexcept {
  s.on.store(false, std::memory_order_relaxed);
  for (auto* c : {&s.copies, &s.copied_bytes, &s.largest_copy, &s.allocations, &s.allocated_bytes,
                  &s.largest_allocation})
    c->store(0, std::memory_order_relaxed);
  s.copy_entries.store(0, std::memory_order_relaxed);
  s.allocation_entries.store(0, std::memory_order_relaxed);
  s.on.store(true, std::memory_order_seq_cst);
}

void stop() noexcept { s.on.store(false, std::memory_order_seq_cst); }
bool recording() noexcept { return s.on.load(std::memory_order_relaxed); }

figures counts() noexcept {
  figures f;
  f.copies = s.copies.load(std::memory_order_relaxed);
  f.copied_bytes = s.copied_bytes.load(std::memory_order_relaxed);
  f.largest_copy = s.largest_copy.load(std::memory_order_relaxed);
  f.allocations = s.allocations.load(std::memory_order_relaxed);
  f.allocated_bytes = s.allocated_bytes.load(std::memory_order_relaxed);
  f.largest_allocation = s.largest_allocation.load(std::memory_order_relaxed);
  return f;
}

std::span<const copy_record> copy_log() noexcept {
  const std::size_t n = s.copy_entries.load(std::memory_order_relaxed);
  return std::span<const copy_record>(s.copy_log.data(), n < log_limit ? n : log_limit);
}

std::span<const std::size_t> allocation_log() noexcept {
  const std::size_t n = s.allocation_entries.load(std::memory_order_relaxed);
  return std::span<const std::size_t>(s.allocation_log.data(), n < log_limit ? n : log_limit);
}

bool copies_visible() noexcept {
  // The linker resolves this object's reference to memcpy to __wrap_memcpy when it wraps; volatile keeps the
  // compiler from deciding the comparison itself.
  void* (*volatile seen)(void*, const void*, std::size_t) = &std::memcpy;
  return seen == &__wrap_memcpy;
}

}  // namespace redist::test::copy_alloc_counter

namespace counter = redist::test::copy_alloc_counter;

extern "C" {

void* __wrap_memcpy(void* to, const void* from, std::size_t n) {
  counter::note_copy(to, from, n);
  return __real_memcpy(to, from, n);
}

void* __wrap_memmove(void* to, const void* from, std::size_t n) {
  counter::note_copy(to, from, n);
  return __real_memmove(to, from, n);
}

}  // extern "C"

// ---- the global operator new and delete, every replaceable form -------------------------------------------
namespace {
constexpr std::size_t plain = alignof(std::max_align_t);
std::size_t of(std::align_val_t a) { return static_cast<std::size_t>(a); }
}  // namespace

void* operator new(std::size_t n) { return counter::allocate(n, plain); }
void* operator new[](std::size_t n) { return counter::allocate(n, plain); }
void* operator new(std::size_t n, std::align_val_t a) { return counter::allocate(n, of(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counter::allocate(n, of(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counter::allocate_nothrow(n, plain);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counter::allocate_nothrow(n, plain);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counter::allocate_nothrow(n, of(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counter::allocate_nothrow(n, of(a));
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
