// Helpers for MPI test cases: who am I in MPI_COMM_WORLD, agreeing on a result, communicators whose ranks
// differ from the world's (reversed, a subset), a random seed every rank agrees on and that failures print,
// and the outcome of a call that must fail, for comparing errors across ranks.
#pragma once

#include <mpi.h>

#include <doctest/doctest.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "redist/comm/mpi.hpp"
#include "redist/comm/mpi/testing.hpp"
#include "redist/core/error.hpp"
#include "redist/detail/hash.hpp"

namespace redist::test {

struct rank_and_size {
  int rank;
  int size;
};

inline rank_and_size comm_info(MPI_Comm comm) {
  rank_and_size info{};
  MPI_Comm_rank(comm, &info.rank);
  MPI_Comm_size(comm, &info.size);
  return info;
}

inline rank_and_size world() { return comm_info(MPI_COMM_WORLD); }

// True on every rank iff ok is true on every rank of comm. Collective: call it on every rank, then CHECK the
// result, so that no rank leaves a test case early while the others wait in a collective.
inline bool all_ranks(bool ok, MPI_Comm comm = MPI_COMM_WORLD) {
  int local = ok ? 1 : 0;
  int all = 0;
  MPI_Allreduce(&local, &all, 1, MPI_INT, MPI_LAND, comm);
  return all != 0;
}

// Owns a communicator made by MPI_Comm_split and frees it; holds MPI_COMM_NULL on ranks that are not members.
class owned_comm {
 public:
  explicit owned_comm(MPI_Comm comm) noexcept : comm_(comm) {}
  owned_comm(owned_comm&& other) noexcept : comm_(std::exchange(other.comm_, MPI_COMM_NULL)) {}
  owned_comm& operator=(owned_comm&& other) noexcept {
    if (this != &other) {
      reset();
      comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
    }
    return *this;
  }
  owned_comm(const owned_comm&) = delete;
  owned_comm& operator=(const owned_comm&) = delete;
  ~owned_comm() { reset(); }

  MPI_Comm get() const noexcept { return comm_; }
  bool is_member() const noexcept { return comm_ != MPI_COMM_NULL; }

 private:
  void reset() noexcept {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  MPI_Comm comm_;
};

// MPI_Comm_split of the world, keeping members in world order. Collective over MPI_COMM_WORLD.
inline owned_comm split_world(bool member) {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, member ? 0 : MPI_UNDEFINED, world().rank, &comm);
  return owned_comm(comm);
}

// Every world rank, numbered backwards: world rank r is rank size-1-r here.
inline owned_comm reversed_world() {
  const auto [rank, size] = world();
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, 0, size - 1 - rank, &comm);
  return owned_comm(comm);
}

// The odd world ranks (world rank r is rank r/2 here); empty on one rank.
inline owned_comm odd_ranks() { return split_world(world().rank % 2 == 1); }

// Every world rank but 0 (world rank r is rank r-1 here); empty on one rank.
inline owned_comm all_but_rank0() { return split_world(world().rank != 0); }

// The odd ranks of a communicator of `size` ranks, in order: the ranks a group() of the odd ranks takes.
inline std::vector<int> odd_ranks_of(int size) {
  std::vector<int> ranks;
  for (int r = 1; r < size; r += 2) ranks.push_back(r);
  return ranks;
}

inline constexpr std::uint64_t default_seed = 20240601;

// Rank 0 reads REDIST_TEST_SEED (default: default_seed) and broadcasts it, so every rank draws the same
// cases. A value that is not a number throws std::invalid_argument on every rank. Collective over
// MPI_COMM_WORLD.
inline std::uint64_t agreed_seed() {
  std::uint64_t msg[2] = {1, default_seed};  // {valid, seed}
  std::string text;
  if (world().rank == 0) {
    if (const char* env = std::getenv("REDIST_TEST_SEED"); env != nullptr) {
      text = env;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), msg[1]);
      msg[0] = ec == std::errc{} && end == text.data() + text.size() && !text.empty() ? 1u : 0u;
    }
  }
  MPI_Bcast(msg, 2, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  if (msg[0] == 0) {
    throw std::invalid_argument("REDIST_TEST_SEED on rank 0 is not an unsigned integer" +
                                (text.empty() ? std::string() : ": '" + text + "'"));
  }
  return msg[1];
}

// Lowers redist's chunk size for its lifetime, so small buffers take the chunked and datatype paths.
using scoped_max_count = redist::testing::scoped_mpi_max_count;

// What a call that must fail did on this rank: whether it threw a redist::error, and the message (of any
// exception), so that the ranks can then compare their outcomes collectively.
struct outcome {
  bool redist_error = false;
  std::string message = "no error";
};

// Runs f and catches what it throws: a test must not leave a rank early on an exception while the others
// wait in a collective.
template <class F>
outcome outcome_of(F&& f) {
  try {
    f();
  } catch (const redist::error& e) {
    return {true, e.what()};
  } catch (const std::exception& e) {
    return {false, std::string("not a redist::error: ") + e.what()};
  }
  return {};
}

// Collective over comm: every rank caught a redist::error with the same message, containing every part.
inline void check_agreed_error(const outcome& o, const redist::mpi_communicator& comm,
                               const std::vector<std::string>& parts) {
  const std::uint64_t h = o.redist_error ? (redist::detail::fingerprint().add(o.message).value() | 1u) : 0;
  const auto [lo, hi] = comm.allreduce_min_max(h);
  bool named = o.redist_error;
  for (const auto& p : parts) named = named && o.message.find(p) != std::string::npos;
  INFO("this rank's message: " << o.message);
  CHECK_MESSAGE(lo == hi, "the ranks caught different messages");
  CHECK_MESSAGE(lo != 0, "every rank must catch a redist::error");
  CHECK(all_ranks(named, comm.native()));
}

}  // namespace redist::test

// Declares `const std::uint64_t name`, agreed on every rank, and has doctest print it with any failure after
// it in the same scope. Rerun a failure with REDIST_TEST_SEED=<seed>.
#define REDIST_AGREED_SEED(name)                            \
  const std::uint64_t name = ::redist::test::agreed_seed(); \
  INFO("seed=" << name)
