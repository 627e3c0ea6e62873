// The CUDA memory space on a real device: gathers, scatters and cross copies of thousands of pieces (0 B to
// 1 MiB, every alignment), the float32 casts of every dtype with their zero padding and the loss check, each
// one kernel launch, compared byte for byte with the host memory space on the same input; copies and fills;
// device tensors (stream-ordered, a caller's allocator, moves) and a user's own device tensor type.
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "redist/core/cuda/space.cuh"
#include "redist/core/cuda/tensor.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/piece_table.hpp"
#include "splitmix.hpp"

namespace {

using redist::const_segment;
using redist::cuda_space;
using redist::cuda_tensor;
using redist::dtype;
using redist::host_space;
using redist::segment;
namespace d = redist::detail;

// A stream of the test's own, synchronized by the test (the library never does).
struct test_stream {
  cudaStream_t s{};
  test_stream() { d::cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~test_stream() { cudaStreamDestroy(s); }
  void sync() const { d::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize"); }
};

// A host buffer and its device twin at the same offsets.
struct twin {
  std::vector<std::byte> host;
  cuda_tensor dev;
  twin(std::size_t n, cudaStream_t s, std::uint64_t seed)
      : host(n), dev(dtype::u8, {static_cast<std::int64_t>(n)}, {s, nullptr}) {
    for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<std::byte>(redist::test::draw(seed, i) & 0xff);
    d::cuda_check(cudaMemcpyAsync(dev.data(), host.data(), n, cudaMemcpyHostToDevice, s), "upload");
  }
  std::byte* h(std::size_t off) { return host.data() + off; }
  std::byte* g(std::size_t off) { return static_cast<std::byte*>(dev.data()) + off; }
  std::vector<std::byte> download(cudaStream_t s) const {
    std::vector<std::byte> out(host.size());
    d::cuda_check(cudaMemcpyAsync(out.data(), dev.data(), out.size(), cudaMemcpyDeviceToHost, s), "download");
    d::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    return out;
  }
};

}  // namespace

TEST_CASE("cuda_space: gather, scatter and cross copies of thousands of pieces, one launch each") {
  test_stream st;
  cuda_space space(st.s);
  for (std::uint64_t seed = 0; seed < 3; ++seed) {
    const std::size_t n = 3000;
    std::vector<std::size_t> offsets(n), sizes(n);
    std::size_t at = 0, total = 0;
    for (std::size_t i = 0; i < n; ++i) {
      at += redist::test::draw(seed, i, 2) % 48;
      offsets[i] = at;
      sizes[i] = redist::test::piece_size(seed, i, std::size_t{1} << 20) / (i % 7 == 0 ? 1 : 64);
      at += sizes[i];
      total += sizes[i];
    }
    twin src(at, st.s, seed), block(total + 16, st.s, seed + 1), back(at, st.s, seed + 2);
    std::vector<const_segment> hp, gp;
    std::vector<segment> hb, gb;
    for (std::size_t i = 0; i < n; ++i) {
      hp.push_back({src.h(offsets[i]), sizes[i]});
      gp.push_back({src.g(offsets[i]), sizes[i]});
      hb.push_back({back.h(offsets[i]), sizes[i]});
      gb.push_back({back.g(offsets[i]), sizes[i]});
    }
    const std::size_t shift = seed * 5 % 16;
    const std::size_t before = space.launches();
    host_space::gather(hp, block.h(shift));
    space.gather(gp, block.g(shift));
    CHECK(space.launches() == before + 1);
    REQUIRE(block.download(st.s) == block.host);

    host_space::scatter(block.h(shift), hb);
    space.scatter(block.g(shift), gb);
    CHECK(space.launches() == before + 2);
    REQUIRE(back.download(st.s) == back.host);

    // The block back into the pieces of `back`, cut differently: every other piece boundary dropped.
    std::vector<segment> hc, gc;
    for (std::size_t i = 0; i + 1 < n; i += 2) {
      hc.push_back({back.h(offsets[i]), sizes[i] + sizes[i + 1]});
      gc.push_back({back.g(offsets[i]), sizes[i] + sizes[i + 1]});
    }
    std::vector<const_segment> hs{{block.h(shift), total}}, gs{{block.g(shift), total}};
    std::size_t covered = 0;
    for (const auto& c : hc) covered += c.bytes;
    hs[0].bytes = gs[0].bytes = covered;
    host_space::copy_pieces(hs, hc);
    space.copy_pieces(gs, gc);
    CHECK(space.launches() == before + 3);
    REQUIRE(back.download(st.s) == back.host);
  }
}

TEST_CASE("cuda_space: float32 casts of every dtype with zero padding, and back, match the host space") {
  test_stream st;
  cuda_space space(st.s);
  for (std::size_t k = 0; k < redist::dtype_count; ++k) {
    const auto t = static_cast<dtype>(k);
    CAPTURE(redist::name(t));
    const std::size_t es = redist::size_of(t);
    const std::size_t pieces = 500;
    twin array(pieces * 3000 * es + 64, st.s, k);
    if (t == dtype::boolean) {
      for (auto& b : array.host) b &= std::byte{1};
      d::cuda_check(cudaMemcpyAsync(array.g(0), array.h(0), array.host.size(), cudaMemcpyHostToDevice, st.s),
                    "up");
    }
    std::vector<d::cast_piece> hto, gto;
    std::size_t wire = 0;
    std::vector<std::size_t> firsts, counts, pads, wires;
    for (std::size_t i = 0; i < pieces; ++i) {
      const std::size_t count = redist::test::draw(k, i, 3) % 3000, first = redist::test::draw(k, i, 4) % 200;
      const std::size_t pad = i % 3 == 0 ? redist::test::draw(k, i, 5) % 300 : 0;
      firsts.push_back(first);
      counts.push_back(count);
      pads.push_back(pad);
      wires.push_back(wire);
      wire += (count + pad) * sizeof(float);
    }
    twin staged(wire + 16, st.s, k + 100), back(array.host.size(), st.s, k + 200);
    std::size_t base = 0;
    for (std::size_t i = 0; i < pieces; ++i) {
      const std::size_t off = base + i % 3;  // some arrays off their type's alignment
      host_space::to_f32(t, array.h(off), firsts[i], counts[i], staged.h(wires[i]));
      host_space::fill(staged.h(wires[i] + counts[i] * 4), pads[i] * 4);
      gto.push_back({array.g(off), staged.g(wires[i]), firsts[i], counts[i], pads[i], t});
      hto.push_back({staged.g(wires[i]), back.g(off), firsts[i], counts[i], pads[i], t});
      host_space::from_f32(t, staged.h(wires[i]), firsts[i], counts[i], back.h(off));
      base += (firsts[i] + counts[i]) * es;
      if (base + 3200 * es + 3 > array.host.size()) base = 0;
    }
    const std::size_t before = space.launches();
    space.run(gto, d::cast_direction::to_f32);
    CHECK(space.launches() == before + 1);
    REQUIRE(staged.download(st.s) == staged.host);
    space.run(hto, d::cast_direction::from_f32);
    CHECK(space.launches() == before + 2);
    REQUIRE(back.download(st.s) == back.host);
  }
}

TEST_CASE("cuda_space: the loss check of thousands of pieces finds the host space's first lossy piece") {
  test_stream st;
  cuda_space space(st.s);
  for (const dtype t : {dtype::i32, dtype::i64, dtype::f64, dtype::f16}) {
    CAPTURE(redist::name(t));
    const std::size_t es = redist::size_of(t), pieces = 2000, per = 700;
    twin array(pieces * per * es, st.s, 7);
    for (std::size_t i = 0; i < pieces * per; ++i) {  // small integers and eighths: every value survives
      std::byte* e = array.h(i * es);
      if (t == dtype::i32) d::store_as<std::int32_t>(e, static_cast<std::int32_t>(i % 5000));
      if (t == dtype::i64) d::store_as<std::int64_t>(e, static_cast<std::int64_t>(i % 5000));
      if (t == dtype::f64) d::store_as<double>(e, static_cast<double>(i % 5000) / 8);
    }
    std::vector<d::cast_piece> host_table, device_table;
    for (std::size_t i = 0; i < pieces; ++i) {
      const std::size_t first = i % 7, count = redist::test::draw(i, 1) % (per - first);
      host_table.push_back({array.h(i * per * es), nullptr, first, count, 0, t});
      device_table.push_back({array.g(i * per * es), nullptr, first, count, 0, t});
    }
    for (const std::size_t planted : {pieces, pieces - 1, std::size_t{1234}, std::size_t{3}}) {
      if (planted < pieces && host_table[planted].count != 0) {
        std::byte* e = array.h((planted * per + host_table[planted].first) * es);
        if (t == dtype::i32) d::store_as<std::int32_t>(e, (1 << 24) + 1);
        if (t == dtype::i64) d::store_as<std::int64_t>(e, (std::int64_t{1} << 40) + 1);
        if (t == dtype::f64) d::store_as<double>(e, 0.1);
      }
      d::cuda_check(cudaMemcpyAsync(array.g(0), array.h(0), array.host.size(), cudaMemcpyHostToDevice, st.s),
                    "up");
      const std::size_t before = space.launches();
      CHECK(space.first_lossy_piece(device_table) == host_space::first_lossy_piece(host_table));
      CHECK(space.launches() == before + 1);
    }
  }
}

TEST_CASE("cuda_space: copies between host and device, fills, and empty tables that launch nothing") {
  test_stream st;
  cuda_space space(st.s);
  twin a(1000, st.s, 7);
  std::vector<std::byte> h(1000, std::byte{3});
  space.copy(a.g(10), h.data(), 100);
  space.fill(a.g(500), 20, std::byte{0x7f});
  host_space::copy(a.h(10), h.data(), 100);
  host_space::fill(a.h(500), 20, std::byte{0x7f});
  REQUIRE(a.download(st.s) == a.host);
  const std::size_t before = space.launches();
  space.gather({}, a.g(0));
  std::vector<const_segment> empty{{a.g(0), 0}, {a.g(5), 0}};
  space.gather(empty, a.g(0));
  CHECK(space.launches() == before);
}

namespace {

struct counting_allocator final : redist::cuda_allocator {
  int allocations = 0, frees = 0;
  void* allocate(std::size_t bytes, cudaStream_t s) override {
    void* p = nullptr;
    d::cuda_check(cudaMallocAsync(&p, bytes, s), "cudaMallocAsync");
    ++allocations;
    return p;
  }
  void deallocate(void* p, std::size_t, cudaStream_t s) noexcept override {
    cudaFreeAsync(p, s);
    ++frees;
  }
};

}  // namespace

TEST_CASE("cuda_tensor: on the current allocation's stream and allocator, moved without copies") {
  test_stream st;
  counting_allocator alloc;
  {
    redist::cuda_allocation_scope scope({st.s, &alloc});
    const std::int64_t shape[] = {3, 5};
    cuda_tensor t = redist::tensor_traits<cuda_tensor>::allocate(dtype::bf16, shape);
    CHECK(t.nbytes() == 30);
    CHECK(t.stream() == st.s);
    CHECK(alloc.allocations == 1);
    int dev = -1;
    d::cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
    CHECK(redist::device_of(t) == dev);
    cuda_tensor moved = std::move(t);
    CHECK(t.data() == nullptr);
    CHECK(alloc.allocations == 1);
    cuda_tensor empty(dtype::f32, {0, 4});
    CHECK(empty.data() == nullptr);
    CHECK(alloc.allocations == 1);
  }
  CHECK(alloc.frees == 1);
  CHECK(redist::detail::current_cuda_allocation().allocator == nullptr);
  st.sync();
}

namespace {

// A user's device tensor: a raw device pointer and a length, known to redist by its traits alone.
struct user_device_tensor {
  void* p;
  std::int64_t n;
  int device;
};

}  // namespace

template <>
struct redist::tensor_traits<user_device_tensor> {
  static constexpr memory_space space = memory_space::device;
  static int device(const user_device_tensor& t) { return t.device; }
  static void* data(user_device_tensor& t) { return t.p; }
  static const void* data(const user_device_tensor& t) { return t.p; }
  static redist::dtype dtype(const user_device_tensor&) { return redist::dtype::i32; }
  static std::size_t rank(const user_device_tensor&) { return 1; }
  static std::int64_t extent(const user_device_tensor& t, std::size_t) { return t.n; }
};

TEST_CASE("a user's device tensor type works by specializing tensor_traits alone") {
  static_assert(redist::tensor_like<user_device_tensor>);
  static_assert(redist::tensor_space<user_device_tensor> == redist::memory_space::device);
  static_assert(std::is_same_v<redist::space_of<user_device_tensor>, cuda_space>);
  test_stream st;
  twin mem(400, st.s, 9);
  const user_device_tensor t{mem.g(0), 100, 0};
  CHECK(redist::device_of(t) == 0);
  redist::space_of<user_device_tensor> space(st.s);
  const auto* bytes = static_cast<const std::byte*>(redist::tensor_traits<user_device_tensor>::data(t));
  std::vector<const_segment> pieces{{bytes + 40, 8}, {bytes, 4}};
  space.gather(pieces, mem.g(200));
  host_space::gather(std::vector<const_segment>{{mem.h(40), 8}, {mem.h(0), 4}}, mem.h(200));
  REQUIRE(mem.download(st.s) == mem.host);
}
