// redist's copy and allocation counter, for tests and benchmarks only: the bytes the program's own code
// copies with memcpy and memmove (wrapped by the linker) and what it allocates through the global operator
// new.
//
// Linking the target redist_copy_alloc_counter into a program passes the GNU linker -Wl,--wrap=memcpy and
// -Wl,--wrap=memmove: every call of the program's own objects (redist's headers as the program instantiates
// them, host_space::copy among them, and its hand-written code) goes through a counting wrapper; calls made
// inside shared libraries (MPI's transport copies, libstdc++'s) do not, so the count is what the program
// copies beyond what the transport copies. A copy the compiler turns into inline moves (a constant size of a
// few words) or an element loop (float32 staging's casts) is not a call and is not seen. The program's global
// operator new, every form (array, aligned, nothrow), is replaced by one that counts calls and bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace redist::test::copy_alloc_counter {

struct figures {
  std::uint64_t copies = 0;        // memcpy and memmove calls
  std::uint64_t copied_bytes = 0;  // their sizes, summed
  std::uint64_t largest_copy = 0;
  std::uint64_t allocations = 0;  // operator new calls
  std::uint64_t allocated_bytes = 0;
  std::uint64_t largest_allocation = 0;
};

// One recorded copy: where to, where from, how many bytes.
struct copy_record {
  const void* to = nullptr;
  const void* from = nullptr;
  std::size_t bytes = 0;
};

// Counting runs between start() (which zeroes every count) and stop(), as the MPI probe's does; neither
// allocates, so that they may be called on either side of the probe's own start() and stop().
void start() noexcept;
void stop() noexcept;
bool recording() noexcept;
figures counts() noexcept;

// Since start(), in order: the first log_limit copies, and the sizes of the first log_limit allocations.
inline constexpr std::size_t log_limit = 4096;
std::span<const copy_record> copy_log() noexcept;
std::span<const std::size_t> allocation_log() noexcept;

// Whether memcpy calls of this program reach the counter: false when it was linked without the linker's
// --wrap (another linker, or a target that does not link redist_copy_alloc_counter itself), so that a copy
// count of 0 is never mistaken for no copies.
bool copies_visible() noexcept;

}  // namespace redist::test::copy_alloc_counter
