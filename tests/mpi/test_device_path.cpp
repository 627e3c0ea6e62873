// MPI tests of the engine's device path without a GPU: a tensor type whose traits say `device`, and a memory
// space standing in for the CUDA space (host memory it registers as device memory; every copy, cast and
// fill it is asked for must touch only that memory, and it counts its tables, which a kernel launch would
// run). The one-call form, both stagings and every pattern, into a new or reused result, on the world and
// backwards, must give the host path's bytes exactly; no byte copy reaches host memory; the tables per call
// do not grow with the samples (one per phase, never one per piece); and a space on another stream than the
// communicator's is the rank's problem (agreed like any other).
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "device_batches.hpp"
#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"
#include "redist/redistribute.hpp"

namespace {

// The "device" memory: every live allocation of the stand-in space and of sim tensors, by start address.
std::map<const std::byte*, std::size_t>& device_memory() {
  static std::map<const std::byte*, std::size_t> m;
  return m;
}
std::size_t host_touches = 0;  // copies, casts or fills the space was asked to make outside device memory

bool on_device(const std::byte* p, std::size_t n) {
  if (n == 0) return true;
  auto& m = device_memory();
  auto it = m.upper_bound(p);
  if (it == m.begin()) return false;
  --it;
  return p >= it->first && p + n <= it->first + it->second;
}
void touch(const std::byte* p, std::size_t n) {
  if (!on_device(p, n)) ++host_touches;
}
std::byte* device_alloc(std::size_t n) {
  auto* p = static_cast<std::byte*>(::operator new[](std::max<std::size_t>(n, 1)));
  device_memory().emplace(p, n);
  return p;
}
void device_free(std::byte* p) {
  if (p == nullptr) return;
  device_memory().erase(p);
  ::operator delete[](p);
}

// A tensor in the stand-in device memory.
struct sim_tensor {
  std::shared_ptr<std::byte> bytes;
  redist::dtype type = redist::dtype::f32;
  std::vector<std::int64_t> shape{0};
  std::size_t nbytes = 0;
  static sim_tensor make(redist::dtype t, std::span<const std::int64_t> s) {
    sim_tensor x;
    x.type = t;
    x.shape.assign(s.begin(), s.end());
    x.nbytes = redist::detail::dense_bytes(t, s, "sim_tensor");
    x.bytes = std::shared_ptr<std::byte>(device_alloc(x.nbytes), device_free);
    return x;
  }
};

// The stand-in for cuda_space: host_space's work, after checking every pointer is device memory.
struct sim_space {
  static constexpr redist::memory_space space = redist::memory_space::device;
  int stream_id = 1;
  std::shared_ptr<std::size_t> tables = std::make_shared<std::size_t>(0);

  int stream() const { return stream_id; }
  void copy(std::byte* to, const std::byte* from, std::size_t n) const {
    touch(to, n);
    touch(from, n);
    redist::host_space::copy(to, from, n);
  }
  void fill(std::byte* to, std::size_t n, std::byte v = std::byte{0}) const {
    touch(to, n);
    redist::host_space::fill(to, n, v);
  }
  void copy_pieces(std::span<const redist::const_segment> from, std::span<const redist::segment> to) const {
    for (const auto& s : from) touch(s.data, s.bytes);
    for (const auto& s : to) touch(s.data, s.bytes);
    ++*tables;
    redist::host_space::copy_pieces(from, to);
  }
  void run(std::span<const redist::detail::copy_piece> t) const {
    for (const auto& p : t) {
      touch(p.src, p.bytes);
      touch(p.dst, p.bytes);
    }
    ++*tables;
    redist::host_space::run(t);
  }
  void run(std::span<const redist::detail::cast_piece> t, redist::detail::cast_direction d) const {
    for (const auto& p : t) {
      const std::size_t es = redist::size_of(p.type);
      const bool to = d == redist::detail::cast_direction::to_f32;
      touch(to ? p.src + p.first * es : p.src, to ? p.count * es : p.count * 4);
      touch(to ? p.dst : p.dst + p.first * es, to ? (p.count + p.pad) * 4 : p.count * es);
    }
    ++*tables;
    redist::host_space::run(t, d);
  }
  std::byte* allocate(std::size_t n) const { return n == 0 ? nullptr : device_alloc(n); }
  void deallocate(std::byte* p, std::size_t) const noexcept { device_free(p); }
};

// What the stream check reads of a communicator that has a stream, as the device communicators do.
struct streamed {
  int rank_ = 0;
  int rank() const { return rank_; }
  int stream() const { return 1; }
};

}  // namespace

template <>
struct redist::tensor_traits<sim_tensor> {
  static constexpr memory_space space = memory_space::device;
  static int device(const sim_tensor&) { return 0; }
  static void* data(sim_tensor& t) { return t.bytes.get(); }
  static const void* data(const sim_tensor& t) { return t.bytes.get(); }
  static redist::dtype dtype(const sim_tensor& t) { return t.type; }
  static std::size_t rank(const sim_tensor& t) { return t.shape.size(); }
  static std::int64_t extent(const sim_tensor& t, std::size_t d) { return t.shape[d]; }
  static sim_tensor allocate(redist::dtype t, std::span<const std::int64_t> s) {
    return sim_tensor::make(t, s);
  }
};
template <>
struct redist::space_policy<redist::memory_space::device> {
  using type = sim_space;
};

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;
using redist::test::host_batch;
using redist::test::make_host;
using redist::test::same;
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
  return *space.tables / 3;
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
  CHECK(redist::detail::space_problem(streamed{3}, space).empty());
  space.stream_id = 2;
  CHECK(redist::detail::space_problem(streamed{3}, space) ==
        "redist::redistribute: rank 3 passes a memory space on another stream than its communicator's");
  CHECK(redist::detail::space_problem(redist::mpi_communicator(MPI_COMM_WORLD), space).empty());  // no stream
}
