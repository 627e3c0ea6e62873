// MPI tests of a rank that cannot allocate what a call returns: redistribute()'s one-call form and seqpar's
// exchanges allocate their results before the agreement, so the failure is the same redist::error on every
// rank, nothing moves, and the communicator works afterwards. This executable replaces the aligned array
// operator new (host_tensor's) so that a test can make large allocations fail on one rank.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "../unit/aligned_new.hpp"
#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/redistribute.hpp"
#include "redist/seqpar.hpp"

namespace {
std::size_t refuse_from = 0;  // aligned allocations of this many bytes or more throw; 0: none do
}  // namespace

void* operator new[](std::size_t size, std::align_val_t align) {
  if (refuse_from != 0 && size >= refuse_from) throw std::bad_alloc();
  return redist::test::aligned_allocation(size, align);
}

namespace {

using redist::dtype;
using redist::sample_id;
using redist::test::all_ranks;
using redist::test::outcome;
using redist::test::outcome_of;

constexpr std::size_t big = std::size_t{1} << 20;  // what the refusing rank cannot allocate

// Refuses large allocations on this rank while alive.
struct refusing {
  explicit refusing(bool on) { refuse_from = on ? big : 0; }
  ~refusing() { refuse_from = 0; }
  refusing(const refusing&) = delete;
  refusing& operator=(const refusing&) = delete;
};

// Collective: every rank caught the same redist::error, containing `part`.
void check_agreed(const outcome& o, const redist::mpi_communicator& comm, const std::string& part) {
  INFO("this rank's message: " << o.message);
  const int size = static_cast<int>(o.message.size());
  CHECK(all_ranks(o.redist_error && o.message.find(part) != std::string::npos, comm.native()));
  CHECK(comm.allreduce_min(static_cast<std::uint64_t>(size)) ==
        comm.allreduce_max(static_cast<std::uint64_t>(size)));
}

// Rank r holds ids 10r + 1 and 10r + 2, one f32 key of 2^17 + id tokens each (about half a MiB), and wants
// the ids of rank r + 1 (mod n): every rank's result is over 1 MiB, its inputs under.
redist::sequence_batch<> ring_batch(int r) {
  const std::vector<sample_id> ids{10 * static_cast<sample_id>(r) + 1, 10 * static_cast<sample_id>(r) + 2};
  redist::seqlen_table lens;
  std::int64_t rows = 0;
  for (sample_id id : ids) {
    const std::int64_t n = (std::int64_t{1} << 17) + static_cast<std::int64_t>(id);
    lens.push_back(std::vector<std::int64_t>{n});
    rows += n;
  }
  redist::host_tensor t(dtype::f32, {rows});
  std::vector<redist::sequence_batch<>::field> fields;
  fields.push_back({"x", dtype::f32, {}, std::move(lens), std::move(t)});
  return redist::sequence_batch<>(ids, std::move(fields));
}

}  // namespace

TEST_CASE("redistribute: a rank that cannot allocate its result; every rank throws, the next call works") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int P = comm.size();
  const redist::sequence_batch<> mine = ring_batch(comm.rank());
  const int next = (comm.rank() + 1) % P;
  const std::vector<sample_id> wanted{10 * static_cast<sample_id>(next) + 2,
                                      10 * static_cast<sample_id>(next) + 1};
  const int bad = P - 1;
  {
    const refusing r(comm.rank() == bad);
    check_agreed(outcome_of([&] { (void)redist::redistribute(comm, mine, wanted); }), comm,
                 "redist::redistribute: rank " + std::to_string(bad) + " could not allocate its result");
  }
  const outcome o = outcome_of([&] {
    const auto got = redist::redistribute(comm, mine, wanted);
    if (!std::ranges::equal(got.ids(), wanted)) throw redist::error("wrong ids");
  });
  INFO(o.message);
  CHECK(all_ranks(!o.redist_error && o.message == "no error", comm.native()));
}

TEST_CASE("seqpar: a rank that cannot allocate a host_tensor output; every rank throws") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int P = comm.size();
  const int bad = P - 1;
  const redist::host_tensor x(dtype::f32, {2 * P, std::int64_t{1} << 18});  // rows of 1 MiB
  {
    const refusing r(comm.rank() == bad);
    check_agreed(outcome_of([&] { (void)redist::seqpar::all_to_all(comm, x, 0, 1); }), comm,
                 "redist::seqpar::all_to_all: rank " + std::to_string(bad) + " could not allocate");
  }
  const outcome o = outcome_of([&] { (void)redist::seqpar::all_to_all(comm, x, 0, 1); });
  INFO(o.message);
  CHECK(all_ranks(!o.redist_error && o.message == "no error", comm.native()));
}
