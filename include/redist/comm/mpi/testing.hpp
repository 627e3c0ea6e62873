// redist::testing: the MPI backend's one test knob, for tests alone. MPI counts are ints, so a message or a
// datatype block over INT_MAX bytes is split; tests lower the limit to run those chunked paths on small
// buffers. No program needs this header.
#pragma once

#include <climits>
#include <cstddef>

namespace redist::testing {

// The most bytes one MPI call moves or one datatype block holds. Every rank must hold the same value, and
// nothing may be in flight when it changes.
inline std::size_t mpi_max_count = INT_MAX;

// Lowers mpi_max_count for its lifetime.
class scoped_mpi_max_count {
 public:
  explicit scoped_mpi_max_count(std::size_t limit) : old_(mpi_max_count) { mpi_max_count = limit; }
  ~scoped_mpi_max_count() { mpi_max_count = old_; }
  scoped_mpi_max_count(const scoped_mpi_max_count&) = delete;
  scoped_mpi_max_count& operator=(const scoped_mpi_max_count&) = delete;

 private:
  std::size_t old_;
};

}  // namespace redist::testing
