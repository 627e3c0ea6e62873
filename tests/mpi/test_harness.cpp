// MPI tests of the test helpers themselves: the communicators they derive really have the ranks they promise,
// all_ranks agrees, and the seed is the same everywhere.
#include <doctest/doctest.h>
#include <mpi.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "mpi_test.hpp"

namespace {

// For each rank of comm, in order, its rank in MPI_COMM_WORLD.
std::vector<int> world_ranks_of(MPI_Comm comm) {
  MPI_Group group = MPI_GROUP_NULL;
  MPI_Group world_group = MPI_GROUP_NULL;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  int size = 0;
  MPI_Group_size(group, &size);
  std::vector<int> ranks(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) ranks[static_cast<std::size_t>(r)] = r;
  std::vector<int> world_ranks(ranks.size());
  MPI_Group_translate_ranks(group, size, ranks.data(), world_group, world_ranks.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  return world_ranks;
}

// Sets REDIST_TEST_SEED on this process for the lifetime of the object, then restores it.
class scoped_seed_env {
 public:
  explicit scoped_seed_env(const char* value) {
    if (const char* old = std::getenv("REDIST_TEST_SEED")) old_ = old;
    setenv("REDIST_TEST_SEED", value, 1);
  }
  ~scoped_seed_env() {
    if (old_) {
      setenv("REDIST_TEST_SEED", old_->c_str(), 1);
    } else {
      unsetenv("REDIST_TEST_SEED");
    }
  }
  scoped_seed_env(const scoped_seed_env&) = delete;
  scoped_seed_env& operator=(const scoped_seed_env&) = delete;

 private:
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("world() is MPI_COMM_WORLD's rank and size") {
  const auto [rank, size] = redist::test::world();
  int mpi_rank = -1;
  int mpi_size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
  CHECK(rank == mpi_rank);
  CHECK(size == mpi_size);
  CHECK(size >= 1);
}

TEST_CASE("all_ranks is true only when every rank says so") {
  const auto [rank, size] = redist::test::world();
  CHECK(redist::test::all_ranks(true));
  CHECK_FALSE(redist::test::all_ranks(false));
  CHECK_FALSE(redist::test::all_ranks(rank != 0));
  CHECK_FALSE(redist::test::all_ranks(rank != size - 1));
  // On a sub-communicator only its members vote.
  const auto odd = redist::test::odd_ranks();
  if (odd.is_member()) CHECK(redist::test::all_ranks(rank % 2 == 1, odd.get()));
}

TEST_CASE("reversed_world numbers the world backwards") {
  const auto [rank, size] = redist::test::world();
  const auto reversed = redist::test::reversed_world();
  CHECK(reversed.is_member());
  const auto info = redist::test::comm_info(reversed.get());
  CHECK(info.size == size);
  CHECK(info.rank == size - 1 - rank);
  std::vector<int> expected;
  for (int r = size - 1; r >= 0; --r) expected.push_back(r);
  CHECK(world_ranks_of(reversed.get()) == expected);
}

TEST_CASE("odd_ranks and all_but_rank0 hold exactly their members, in world order") {
  const auto [rank, size] = redist::test::world();
  {
    const auto odd = redist::test::odd_ranks();
    CHECK(odd.is_member() == (rank % 2 == 1));
    if (odd.is_member()) {
      const auto info = redist::test::comm_info(odd.get());
      CHECK(info.size == size / 2);
      CHECK(info.rank == rank / 2);
      std::vector<int> expected;
      for (int r = 1; r < size; r += 2) expected.push_back(r);
      CHECK(world_ranks_of(odd.get()) == expected);
    } else {
      CHECK(odd.get() == MPI_COMM_NULL);
    }
  }
  {
    const auto rest = redist::test::all_but_rank0();
    CHECK(rest.is_member() == (rank != 0));
    if (rest.is_member()) {
      const auto info = redist::test::comm_info(rest.get());
      CHECK(info.size == size - 1);
      CHECK(info.rank == rank - 1);
      std::vector<int> expected;
      for (int r = 1; r < size; ++r) expected.push_back(r);
      CHECK(world_ranks_of(rest.get()) == expected);
    } else {
      CHECK(rest.get() == MPI_COMM_NULL);
    }
  }
}

TEST_CASE("owned_comm moves ownership") {
  auto a = redist::test::reversed_world();
  const MPI_Comm handle = a.get();
  redist::test::owned_comm b = std::move(a);
  CHECK(b.get() == handle);
  CHECK(a.get() == MPI_COMM_NULL);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  redist::test::owned_comm c(MPI_COMM_NULL);
  c = std::move(b);
  CHECK(c.get() == handle);
  CHECK_FALSE(b.is_member());
  CHECK(redist::test::all_ranks(true, c.get()));  // still a working communicator
}

TEST_CASE("agreed_seed is rank 0's choice on every rank") {
  const auto [rank, size] = redist::test::world();
  {
    // Only rank 0 sees the variable; every rank must still get its value.
    std::optional<scoped_seed_env> env;
    if (rank == 0) env.emplace("123456789");
    const std::uint64_t seed = redist::test::agreed_seed();
    CHECK(seed == 123456789u);
  }
  {
    std::optional<scoped_seed_env> env;
    if (rank == 0) env.emplace("12x");
    CHECK_THROWS_AS(redist::test::agreed_seed(), std::invalid_argument);  // on every rank, not only rank 0
  }
  REDIST_AGREED_SEED(seed);
  std::uint64_t min = 0;
  std::uint64_t max = 0;
  MPI_Allreduce(&seed, &min, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&seed, &max, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  CHECK(min == max);
  CHECK(size >= 1);
}
