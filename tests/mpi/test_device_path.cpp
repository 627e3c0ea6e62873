// MPI tests of the engine's device path without a GPU, on the stand-in device of sim_device.hpp (a tensor
// type whose traits say `device`, and a memory space standing in for the CUDA space). The one-call form, both
// stagings and every pattern, into a new or reused result, on the world and backwards, must give the host
// path's bytes exactly; no byte copy reaches host memory; the tables per call do not grow with the samples
// (one per phase, never one per piece); and a space on another stream than the communicator's is the rank's
// problem (agreed like any other).
#include <doctest/doctest.h>
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "device_batches.hpp"
#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/redistribute.hpp"
#include "sim_device.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;
using redist::test::host_batch;
using redist::test::host_touches;
using redist::test::make_host;
using redist::test::same;
using redist::test::sim_space;
using redist::test::sim_tensor;
using redist::test::streamed;
using redist::test::wanted_by;
using device_batch = redist::sequence_batch<sim_tensor>;

device_batch to_device(const host_batch& b) {
  return redist::test::convert<host_tensor, sim_tensor>(
      b, [](dtype t, std::span<const std::int64_t> s) { return sim_tensor::make(t, s); }, std::memcpy);
}
host_batch to_host(const device_batch& b) {
  return redist::test::convert<sim_tensor, host_tensor>(
      b,
      [](dtype t, std::span<const std::int64_t> s) {
        return host_tensor(t, std::vector<std::int64_t>(s.begin(), s.end()));
      },
      std::memcpy);
}

template <class Staging>
std::size_t tables_of_call(const redist::mpi_communicator& comm, std::size_t per_rank,
                           redist::plan_pattern pattern, std::size_t budget, bool& ok) {
  const int r = comm.rank(), n = comm.size();
  const auto host = make_host(r, per_rank, 7);
  const auto wanted = wanted_by(r, n, per_rank);
  redist::redistribute_options opts{.max_staging_bytes = budget, .allow_lossy = true, .pattern = pattern};
  const host_batch want = redist::redistribute<Staging>(comm, host, wanted, opts);
  const auto dev = to_device(host);
  sim_space space;
  host_touches = 0;
  const device_batch got = redist::redistribute<Staging>(comm, dev, wanted, opts, space);
  device_batch reused;
  redist::redistribute_into<Staging>(comm, dev, wanted, reused, opts, space);
  redist::redistribute_into<Staging>(comm, dev, wanted, reused, opts, space);
  ok = ok && host_touches == 0 && same(to_host(got), want) && same(to_host(reused), want);
  return space.count->tables / 3;
}

}  // namespace

TEST_CASE(
    "device path: every pattern and staging gives the host path's bytes, copies only in device memory") {
  for (const bool backwards : {false, true}) {
    auto owned = backwards ? redist::test::reversed_world() : redist::test::split_world(true);
    const redist::mpi_communicator comm(owned.get());
    for (const auto pattern : {redist::plan_pattern::one_hop, redist::plan_pattern::gather_scatter,
                               redist::plan_pattern::broadcast}) {
      for (const std::size_t budget : {std::size_t{256} << 20, std::size_t{4096}}) {
        bool ok = true;
        const std::size_t few = tables_of_call<redist::byte_staging>(comm, 6, pattern, budget, ok);
        const std::size_t many = tables_of_call<redist::byte_staging>(comm, 60, pattern, budget, ok);
        const std::size_t f32_few = tables_of_call<redist::float32_staging>(comm, 6, pattern, budget, ok);
        const std::size_t f32_many = tables_of_call<redist::float32_staging>(comm, 60, pattern, budget, ok);
        CAPTURE(backwards);
        CAPTURE(static_cast<int>(pattern));
        CAPTURE(budget);
        CHECK(redist::test::all_ranks(ok));
        // The tables of a call depend on its steps and rounds, not on how many samples they carry.
        if (budget > (std::size_t{1} << 20)) {
          CHECK(redist::test::all_ranks(few == many));
          CHECK(redist::test::all_ranks(f32_few == f32_many));
        }
      }
    }
  }
}

TEST_CASE("device path: a memory space on another stream than the communicator's is the rank's problem") {
  sim_space space;
  CHECK(redist::detail::space_problem("redist::redistribute", streamed{3}, space).empty());
  space.stream_id = 2;
  CHECK(redist::detail::space_problem("redist::redistribute", streamed{3}, space) ==
        "redist::redistribute: rank 3 passes a memory space on another stream than its communicator's");
  CHECK(redist::detail::space_problem("redist::redistribute", redist::mpi_communicator(MPI_COMM_WORLD), space)
            .empty());  // no stream
}

TEST_CASE("device path: float32 staging checks device values for loss, as the host path does") {
  auto owned = redist::test::reversed_world();
  const redist::mpi_communicator comm(owned.get());
  const int r = comm.rank(), n = comm.size();
  auto host = make_host(r, 20, 3);
  for (auto& v : host.data("a").values<std::int32_t>()) v &= 0xffff;  // every value survives float32
  const auto wanted = wanted_by(r, n, 20);
  const host_batch want = redist::redistribute<redist::float32_staging>(comm, host, wanted);
  sim_space space;
  host_touches = 0;
  const device_batch got =
      redist::redistribute<redist::float32_staging>(comm, to_device(host), wanted, {}, space);
  CHECK(redist::test::all_ranks(host_touches == 0 && same(to_host(got), want) && space.count->reads == 0));

  // One value beyond 2^24 on the last rank, in a sample another rank wants: the same error as the host
  // path's, naming the element, the id, the key and the rank, on every rank.
  if (r == n - 1 && n > 1) host.data("a").values<std::int32_t>()[7] = (1 << 24) + 1;
  const auto host_error =
      redist::test::outcome_of([&] { redist::redistribute<redist::float32_staging>(comm, host, wanted); });
  const auto device_error = redist::test::outcome_of(
      [&] { redist::redistribute<redist::float32_staging>(comm, to_device(host), wanted, {}, space); });
  if (n == 1) {
    CHECK(!host_error.redist_error);
    CHECK(!device_error.redist_error);
    return;
  }
  redist::test::check_agreed_error(device_error, comm, {"float32_staging would change element", "key 'a'"});
  CHECK(redist::test::all_ranks(device_error.message == host_error.message));
}
