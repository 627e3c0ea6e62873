// MPI test relating redist::topology to real communicators: splitting a communicator by a topology's
// coordinates yields exactly the ranks ranks_where names, on the world and on a communicator numbered
// backwards.
#include <doctest/doctest.h>
#include <mpi.h>

#include <cstddef>
#include <vector>

#include "mpi_test.hpp"
#include "redist/core/topology.hpp"

namespace {

struct grid {
  int pipe = 1;
  int data = 1;
  int tensor = 1;
};

// Deals the prime factors of n out to data, tensor, pipe in turn: 8 is 2x2x2, 4 is 1x2x2, 2 and 3 are all
// data.
grid grid_for(int n) {
  int extents[3] = {1, 1, 1};
  std::size_t next = 0;
  for (int p = 2; n > 1;) {
    if (n % p == 0) {
      extents[next] *= p;
      next = (next + 1) % 3;
      n /= p;
    } else {
      ++p;
    }
  }
  return {extents[2], extents[0], extents[1]};
}

// Independently of redist::topology: the ascending ranks of a (pipe, data, tensor) row-major grid whose
// coordinates match; -1 matches any value.
std::vector<int> brute_force(const grid& g, int pipe, int data, int tensor) {
  std::vector<int> ranks;
  for (int p = 0; p < g.pipe; ++p) {
    for (int d = 0; d < g.data; ++d) {
      for (int t = 0; t < g.tensor; ++t) {
        if ((pipe < 0 || p == pipe) && (data < 0 || d == data) && (tensor < 0 || t == tensor)) {
          ranks.push_back((p * g.data + d) * g.tensor + t);
        }
      }
    }
  }
  return ranks;
}

// For each rank of comm, in comm's order, its rank in `in`.
std::vector<int> ranks_in(MPI_Comm comm, MPI_Comm in) {
  MPI_Group group = MPI_GROUP_NULL;
  MPI_Group in_group = MPI_GROUP_NULL;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(in, &in_group);
  int size = 0;
  MPI_Group_size(group, &size);
  std::vector<int> ranks(static_cast<std::size_t>(size));
  for (std::size_t r = 0; r < ranks.size(); ++r) ranks[r] = static_cast<int>(r);
  std::vector<int> translated(ranks.size());
  MPI_Group_translate_ranks(group, size, ranks.data(), in_group, translated.data());
  MPI_Group_free(&group);
  MPI_Group_free(&in_group);
  return translated;
}

redist::test::owned_comm split(MPI_Comm comm, int color, int key) {
  MPI_Comm sub = MPI_COMM_NULL;
  MPI_Comm_split(comm, color, key, &sub);
  return redist::test::owned_comm(sub);
}

// Lays the topology over comm (topology rank = rank in comm) and checks, on every rank, that splitting comm
// by the data coordinate gives the data slice, and by (pipe, tensor) the data-parallel group, as ranks_where
// says. Returns the members of this rank's data slice as MPI_COMM_WORLD ranks. Collective over comm.
std::vector<int> check_splits(MPI_Comm comm, const redist::topology& topo, const grid& g) {
  const auto [rank, size] = redist::test::comm_info(comm);
  const int pipe = topo.coord(rank, "pipe");
  const int data = topo.coord(rank, "data");
  const int tensor = topo.coord(rank, "tensor");

  const auto slice = split(comm, data, rank);
  const std::vector<int> slice_expected = brute_force(g, -1, data, -1);
  const std::vector<int> slice_members = ranks_in(slice.get(), comm);
  CHECK(redist::test::all_ranks(topo.ranks_where({{"data", data}}) == slice_expected, comm));
  CHECK(redist::test::all_ranks(slice_members == slice_expected, comm));

  const auto dp_group = split(comm, pipe * g.tensor + tensor, rank);
  const std::vector<int> dp_expected = brute_force(g, pipe, -1, tensor);
  CHECK(redist::test::all_ranks(topo.ranks_where({{"tensor", tensor}, {"pipe", pipe}}) == dp_expected, comm));
  CHECK(redist::test::all_ranks(ranks_in(dp_group.get(), comm) == dp_expected, comm));
  CHECK(redist::test::all_ranks(redist::test::comm_info(dp_group.get()).size == g.data, comm));
  return ranks_in(slice.get(), MPI_COMM_WORLD);
}

}  // namespace

TEST_CASE("splitting by topology coordinates gives the ranks ranks_where names") {
  const auto [rank, size] = redist::test::world();
  const grid g = grid_for(size);
  const redist::topology topo({{"pipe", g.pipe}, {"data", g.data}, {"tensor", g.tensor}});
  INFO("pipe x data x tensor = " << g.pipe << " x " << g.data << " x " << g.tensor);
  REQUIRE(topo.size() == size);  // the same on every rank: all leave together or none does

  SUBCASE("on MPI_COMM_WORLD") { check_splits(MPI_COMM_WORLD, topo, g); }

  SUBCASE("on a communicator numbered backwards") {
    const auto reversed = redist::test::reversed_world();
    const std::vector<int> members_in_world = check_splits(reversed.get(), topo, g);
    // The slice's ranks in the reversed communicator, r, are world ranks size-1-r.
    std::vector<int> slice_in_world;
    for (const int r : topo.ranks_where({{"data", topo.coord(size - 1 - rank, "data")}})) {
      slice_in_world.push_back(size - 1 - r);
    }
    CHECK(redist::test::all_ranks(members_in_world == slice_in_world));
  }
}

TEST_CASE("grid_for covers the sizes the tests run at") {
  const auto product = [](const grid& g) { return g.pipe * g.data * g.tensor; };
  for (const int n : {1, 2, 3, 4, 5, 6, 8, 12, 16}) CHECK(product(grid_for(n)) == n);
  CHECK(grid_for(8).pipe == 2);
  CHECK(grid_for(8).data == 2);
  CHECK(grid_for(8).tensor == 2);
  CHECK(grid_for(4).data == 2);
  CHECK(grid_for(4).tensor == 2);
  CHECK(grid_for(3).data == 3);
}
