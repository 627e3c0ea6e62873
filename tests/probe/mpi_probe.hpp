// redist's MPI probe, for tests and benchmarks only: counts the MPI calls a rank makes through the profiling
// interface (per function, collectives apart from point to point, bytes) and makes one chosen call fail.
// Linked into a program, it wraps every MPI function redist's MPI backend and the benchmarks' baselines call.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace redist::test::mpi_probe {

enum class call_kind : unsigned char {
  collective,      // every rank of a communicator takes part (started nonblocking ones too)
  point_to_point,  // sends, receives, probes
  completion,      // waits and tests of requests
  local,           // datatypes, groups, statuses, communicator queries
};
const char* kind_name(call_kind kind) noexcept;

struct call_count {
  const char* function = "";  // "MPI_Alltoallw"
  call_kind kind = call_kind::local;
  std::uint64_t calls = 0;
  std::uint64_t bytes_out = 0;  // what this rank's buffers give the calls: sent, reduced, broadcast by root
  std::uint64_t bytes_in = 0;   // what they can take: the receive buffers' sizes, not what arrived
};

// Counting runs between start() (which zeroes every count) and stop(); calls made outside are neither
// counted nor made to fail, so a test's own checks around an operation stay out of its figures.
void start();
void stop();
bool recording() noexcept;

// Since start(): each function called, in the order of its first call; the totals of one kind; and the
// functions in call order (the first 4096 calls).
std::vector<call_count> counts();
call_count total(call_kind kind);
const std::vector<const char*>& sequence() noexcept;

// The one failure of a run, read from REDIST_FAULT=FUNCTION:RANK:OCCURRENCE when start() is first called:
// the OCCURRENCE-th (from 1) recorded call of FUNCTION on rank RANK of MPI_COMM_WORLD fails with
// MPI_ERR_OTHER, raised on the error handler MPI would raise it on (the call's communicator, the request's,
// else MPI_COMM_WORLD's). A call that starts something (a collective, a send, a receive, a datatype) fails
// without calling PMPI, like an MPI that refuses a call at its entry: peers are left in their matching
// calls, the case the tests must see end. A completion (MPI_Wait, MPI_Test) fails after PMPI has completed
// it, like a transfer that failed in flight: the request is gone, so the caller never frees an active one
// and no buffer is written after the caller sees the error.
struct fault {
  std::string function;
  int rank = -1;
  std::uint64_t occurrence = 0;
};
const fault* configured_fault();  // null without REDIST_FAULT
bool fault_fired() noexcept;

// For a test's own hooks (an allocator): records one call of `function` as the wrappers do and says whether
// it is the configured fault.
bool record(const char* function, call_kind kind, std::uint64_t bytes_out, std::uint64_t bytes_in);

}  // namespace redist::test::mpi_probe
