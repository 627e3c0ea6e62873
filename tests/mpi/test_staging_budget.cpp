// MPI tests of the staging budget: a call's peak heap beyond what it returns stays within max_staging_bytes
// per direction (plus the few KiB its metadata and plan take), float32's padding counted, for both stagings
// and every pattern, on a layout where one sample is far longer than the others (so that padding every block
// to the longest would cost each rank a multiple of the budget). This executable replaces the global operator
// new and delete to count the bytes alive on this rank and their peak.
#include <doctest/doctest.h>
#include <malloc.h>
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/redistribute.hpp"

namespace {
std::atomic<long long> live{0}, peak{0};

void* counted(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  const long long now = live += static_cast<long long>(malloc_usable_size(p));
  for (long long seen = peak.load(); now > seen && !peak.compare_exchange_weak(seen, now);) {
  }
  return p;
}
void release(void* p) noexcept {
  if (p == nullptr) return;
  live -= static_cast<long long>(malloc_usable_size(p));
  std::free(p);
}
void* aligned(std::size_t size, std::align_val_t align) {
  const auto a = static_cast<std::size_t>(align);
  return counted(std::aligned_alloc(a, (size + a - 1) / a * a + (size == 0 ? a : 0)));
}
}  // namespace

void* operator new(std::size_t size) { return counted(std::malloc(size == 0 ? 1 : size)); }
void* operator new[](std::size_t size) { return counted(std::malloc(size == 0 ? 1 : size)); }
void* operator new(std::size_t size, std::align_val_t a) { return aligned(size, a); }
void* operator new[](std::size_t size, std::align_val_t a) { return aligned(size, a); }
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;
using batch = redist::sequence_batch<>;
using redist::test::all_ranks;

constexpr std::size_t budget = std::size_t{256} << 10;
constexpr std::size_t slack = std::size_t{192} << 10;  // metadata, catalog, plan, piece lists

// Rank r holds samples 10r + k for k < 3, key "x" (f32 [4]) and "v" (i64): sample 10r + 0 of rank 0 has
// 32,768 tokens (1.5 MiB), every other sample 64. Rank r wants sample k = r % 3 of every other rank.
std::int64_t tokens_of(sample_id id) { return id == 0 ? 32768 : 64; }

batch make_batch(int r) {
  std::vector<sample_id> ids;
  for (sample_id k = 0; k < 3; ++k) ids.push_back(10 * static_cast<sample_id>(r) + k);
  std::vector<batch::field> fields;
  std::int64_t rows = 0;
  redist::seqlen_table lens;
  for (sample_id id : ids) {
    const std::int64_t t = tokens_of(id);
    lens.push_back(std::span(&t, 1));
    rows += t;
  }
  host_tensor x(dtype::f32, {rows, 4});
  auto xv = x.values<float>();
  for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<float>(i % 1000);
  host_tensor v(dtype::i64, {rows});
  auto vv = v.values<std::int64_t>();
  for (std::size_t i = 0; i < vv.size(); ++i) vv[i] = static_cast<std::int64_t>(i % 5000);
  fields.push_back({"x", dtype::f32, {4}, lens, std::move(x)});
  fields.push_back({"v", dtype::i64, {}, lens, std::move(v)});
  return batch(ids, std::move(fields));
}

std::vector<sample_id> wanted_by(int r, int n) {
  std::vector<sample_id> ids;
  for (int s = 0; s < n; ++s)
    if (s != r) ids.push_back(10 * static_cast<sample_id>(s) + static_cast<sample_id>(r % 3));
  return ids;
}

std::size_t result_bytes(const batch& b) {
  std::size_t n = 0;
  for (const auto& f : b.fields()) n += b.data(f.name).nbytes();
  return n;
}

// Runs the one-call form and returns its peak heap beyond the heap before it and the result it returns.
template <class Staging>
long long peak_beyond_result(const redist::mpi_communicator& comm, const batch& local,
                             const std::vector<sample_id>& wanted, redist::plan_pattern pattern) {
  const redist::redistribute_options opts{.max_staging_bytes = budget, .pattern = pattern};
  const long long before = live.load();
  peak = before;
  const batch got = redist::redistribute<Staging>(comm, local, wanted, opts);
  return peak.load() - before - static_cast<long long>(result_bytes(got));
}

}  // namespace

TEST_CASE(
    "a call stages no more than its budget per direction beyond its result, float32's padding counted") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const batch local = make_batch(comm.rank());
  const auto wanted = wanted_by(comm.rank(), comm.size());
  const auto limit = static_cast<long long>(2 * budget + slack);
  for (const auto pattern : {redist::plan_pattern::one_hop, redist::plan_pattern::gather_scatter,
                             redist::plan_pattern::broadcast}) {
    const long long f32 = peak_beyond_result<redist::float32_staging>(comm, local, wanted, pattern);
    const long long bytes = peak_beyond_result<redist::byte_staging>(comm, local, wanted, pattern);
    INFO("pattern " << static_cast<int>(pattern) << ": float32 " << f32 << " bytes, byte staging " << bytes
                    << " bytes beyond the result; limit " << limit);
    CHECK(all_ranks(f32 <= limit && bytes <= limit));
  }
}
