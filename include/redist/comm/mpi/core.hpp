// The MPI backend's foundations: MPI return codes as redist::error, sizes cut into MPI counts (chunks of at
// most INT_MAX bytes), derived datatypes and communicators owned for their lifetime.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // Open MPI's deprecated C++ bindings warn under -Werror; redist uses the C API
#endif
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/comm/mpi/testing.hpp"
#include "redist/core/error.hpp"
#include "redist/detail/checked.hpp"
#include "redist/detail/hash.hpp"

namespace redist {
namespace detail {

// Turns a failed MPI return code into a redist::error naming the call and MPI's own explanation.
inline void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) [[likely]]
    return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS || length <= 0) {
    fail("redist::mpi_communicator: ", what, " failed: MPI error code ", rc);
  }
  fail("redist::mpi_communicator: ", what,
       " failed: ", std::string_view(text, static_cast<std::size_t>(length)));
}

// The most bytes one MPI call moves or one datatype block holds (MPI counts are ints; tests lower it, see
// comm/mpi/testing.hpp).
inline std::size_t max_count() noexcept {
  return std::clamp<std::size_t>(testing::mpi_max_count, 1, INT_MAX);
}

// The one place sizes become MPI counts: fn(offset, count) for consecutive chunks of [0, bytes) of at most
// max_count() bytes; once with count 0 for an empty range, so that an empty send still matches its receive.
template <class Fn>
void for_each_chunk(std::size_t bytes, Fn&& fn) {
  const std::size_t limit = max_count();
  std::size_t offset = 0;
  do {
    const std::size_t n = std::min(bytes - offset, limit);
    fn(offset, static_cast<int>(n));
    offset += n;
  } while (offset < bytes);
}

// Appends [at, at + bytes) (at: a distance from the buffer MPI is given) to a datatype's block list in blocks
// of at most max_count() bytes; a piece that starts where the last block ends extends it.
inline void append_blocks(MPI_Aint at, std::size_t bytes, std::vector<int>& lengths,
                          std::vector<MPI_Aint>& displs) {
  for_each_chunk(bytes, [&](std::size_t offset, int n) {
    const MPI_Aint start = at + static_cast<MPI_Aint>(offset);
    if (n == 0) return;
    if (!lengths.empty() && displs.back() + lengths.back() == start &&
        static_cast<std::size_t>(lengths.back()) + static_cast<std::size_t>(n) <= max_count()) {
      lengths.back() += n;
      return;
    }
    lengths.push_back(n);
    displs.push_back(start);
  });
}

// The derived datatypes one operation builds, freed when it returns or throws.
class mpi_types {
 public:
  mpi_types() = default;
  mpi_types(const mpi_types&) = delete;
  mpi_types& operator=(const mpi_types&) = delete;
  ~mpi_types() {
    for (MPI_Datatype& type : types_) {
      if (type != MPI_DATATYPE_NULL) MPI_Type_free(&type);
    }
  }

  // A committed datatype of MPI_BYTE blocks, lengths[i] bytes at displacement displs[i].
  MPI_Datatype hindexed(const std::vector<int>& lengths, const std::vector<MPI_Aint>& displs) {
    MPI_Datatype& type = types_.emplace_back(MPI_DATATYPE_NULL);
    const int rc = MPI_Type_create_hindexed(static_cast<int>(lengths.size()), lengths.data(), displs.data(),
                                            MPI_BYTE, &type);
    if (rc != MPI_SUCCESS) type = MPI_DATATYPE_NULL;
    mpi_check(rc, "MPI_Type_create_hindexed");
    mpi_check(MPI_Type_commit(&type), "MPI_Type_commit");
    return type;
  }

 private:
  std::vector<MPI_Datatype> types_;
};

// Owns a communicator redist created; frees it unless MPI is already finalized (no MPI call is allowed then).
class mpi_comm_owner {
 public:
  explicit mpi_comm_owner(MPI_Comm comm) noexcept : comm_(comm) {}
  mpi_comm_owner(mpi_comm_owner&& other) noexcept : comm_(std::exchange(other.comm_, MPI_COMM_NULL)) {}
  mpi_comm_owner& operator=(mpi_comm_owner&& other) noexcept {
    if (this != &other) {
      reset();
      comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
    }
    return *this;
  }
  ~mpi_comm_owner() { reset(); }
  MPI_Comm get() const noexcept { return comm_; }

 private:
  void reset() noexcept {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (comm_ != MPI_COMM_NULL && finalized == 0) MPI_Comm_free(&comm_);
    comm_ = MPI_COMM_NULL;
  }
  MPI_Comm comm_;
};

// A piece of memory of bytes of type Byte: const_segment for const std::byte, segment for std::byte.
template <class Byte>
using segment_for = std::conditional_t<std::is_const_v<Byte>, const_segment, segment>;

inline void check_received(const MPI_Status& status, int expected, const char* op) {
  int got = 0;
  mpi_check(MPI_Get_count(&status, MPI_BYTE, &got), "MPI_Get_count");
  if (got != expected) {
    fail("redist::mpi_communicator::", op, ": a message of ", got, " bytes arrived from rank ",
         status.MPI_SOURCE, " with tag ", status.MPI_TAG, " where ", expected, " bytes were expected");
  }
}

// What MPI reads of a nonblocking collective's arguments until it completes: count and displacement arrays
// and derived datatypes. The request owns them and frees them only once it has completed.
struct mpi_collective_args {
  std::vector<int> ints;            // send counts, send displacements, receive counts, receive displacements
  std::vector<MPI_Datatype> types;  // per rank: send side, then receive side
  mpi_types owned;
};

// One side of an MPI_Alltoallw on a communicator of `size` ranks: the buffer MPI is given (the lowest piece;
// null when nothing moves) and each rank's count, displacement and datatype. MPI_BYTE counts and
// displacements when every rank's bytes are one block within max_count() bytes of the lowest piece, else one
// hindexed datatype per rank (owned by `owned`) over distances from it, blocks split at max_count(). Each
// side decides alone: the other ranks need not know.
template <class PiecesOf>
const void* describe_side(int size, PiecesOf pieces_of, int* counts, int* displs, MPI_Datatype* types,
                          mpi_types& owned) {
  const std::byte* low = nullptr;
  std::uintptr_t lo = UINTPTR_MAX;
  std::uintptr_t hi = 0;
  bool lean = true;
  for (int p = 0; p < size; ++p) {
    int blocks = 0;
    for (const auto& s : pieces_of(p)) {
      if (s.bytes == 0) continue;
      const auto at = reinterpret_cast<std::uintptr_t>(s.data);
      if (++blocks > 1) lean = false;
      if (at < lo) {
        lo = at;
        low = s.data;
      }
      hi = std::max(hi, at + s.bytes);
    }
  }
  if (low == nullptr) return nullptr;  // nothing to move: counts 0
  if (lean && hi - lo <= max_count()) {
    for (int p = 0; p < size; ++p) {
      for (const auto& s : pieces_of(p)) {
        if (s.bytes == 0) continue;
        counts[p] = static_cast<int>(s.bytes);
        displs[p] = static_cast<int>(reinterpret_cast<std::uintptr_t>(s.data) - lo);
      }
    }
    return low;
  }
  // Displacements are distances from the lowest piece, the buffer MPI is given, as in the lean case: no
  // MPI_Get_address, which an MPI_BOTTOM-based datatype would need.
  std::vector<int> lengths;
  std::vector<MPI_Aint> addresses;
  for (int p = 0; p < size; ++p) {
    lengths.clear();
    addresses.clear();
    for (const auto& s : pieces_of(p)) {
      if (s.bytes == 0) continue;
      const auto distance = static_cast<MPI_Aint>(reinterpret_cast<std::uintptr_t>(s.data) - lo);
      append_blocks(distance, s.bytes, lengths, addresses);
    }
    if (lengths.empty()) continue;
    types[p] = owned.hindexed(lengths, addresses);
    counts[p] = 1;
  }
  return low;
}

}  // namespace detail

}  // namespace redist
