// Benchmark of the CUDA memory space's one-launch kernels, nccl-tests style: a gather of many pieces into one
// block, the scatter back, and the float32 cast with padding (bf16 -> f32 -> bf16), each against
// cudaMemcpyAsync device to device of the same bytes in one piece, for pieces from 256 B to 1 MiB. Times are
// medians of CUDA events around the whole call (table built and uploaded, kernel run); algbw is the block's
// bytes over that time; ratio = algbw / memcpy algbw. With --check every result is compared byte for byte
// with the host memory space (#wrong).
//
//   ./example_bench_device_staging --check               256 MiB per size, every result verified
//   ./example_bench_device_staging                       no arguments: --quick --check (what CTest runs)
// More: --bytes N (per size, 256 MiB), --iters N (20). Exits 77 without a GPU (skipped), non-zero on a wrong
// byte; targets missed are reported, not failed.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "redist/core/cuda/space.cuh"
#include "redist/core/cuda/tensor.hpp"
#include "redist/core/memory_space.hpp"

namespace {

namespace d = redist::detail;
using redist::const_segment;
using redist::segment;

struct config {
  std::size_t bytes = std::size_t{256} << 20;
  int iters = 20;
  bool check = false;
};

// Median milliseconds of `iters` runs of f on the stream, timed by events around each.
template <class F>
double median_ms(cudaStream_t s, int iters, F f) {
  cudaEvent_t a, b;
  d::cuda_check(cudaEventCreate(&a), "cudaEventCreate");
  d::cuda_check(cudaEventCreate(&b), "cudaEventCreate");
  f();  // warm-up: tables allocated, kernels loaded
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    d::cuda_check(cudaEventRecord(a, s), "cudaEventRecord");
    f();
    d::cuda_check(cudaEventRecord(b, s), "cudaEventRecord");
    d::cuda_check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float t = 0;
    d::cuda_check(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::vector<std::byte> download(const void* p, std::size_t n) {
  std::vector<std::byte> out(n);
  d::cuda_check(cudaMemcpy(out.data(), p, n, cudaMemcpyDeviceToHost), "cudaMemcpy");
  return out;
}

std::size_t wrong(const std::vector<std::byte>& got, const std::vector<std::byte>& want) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < got.size(); ++i) n += got[i] != want[i] ? 1 : 0;
  return n;
}

struct row {
  const char* op;
  double ms, base_ms, target;
  std::size_t bytes, wrong;
};

void print(std::size_t piece, std::size_t pieces, const row& r, bool& missed) {
  const double gbs = static_cast<double>(r.bytes) / r.ms / 1e6,
               base = static_cast<double>(r.bytes) / r.base_ms / 1e6;
  const double ratio = gbs / base;
  const bool met = ratio >= r.target;
  missed = missed || !met;
  std::printf("%9zu %9zu %12zu %-8s %10.1f %9.1f %10.1f %9.1f %7.2f %6.2f %-6s %7zu\n", piece, pieces,
              r.bytes, r.op, r.ms * 1e3, gbs, r.base_ms * 1e3, base, ratio, r.target, met ? "met" : "MISSED",
              r.wrong);
}

}  // namespace

int main(int argc, char** argv) {
  config c;
  if (argc <= 1) {
    c.bytes = std::size_t{16} << 20;
    c.iters = 5;
    c.check = true;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--check")
      c.check = true;
    else if (a == "--quick")
      c.bytes = std::size_t{16} << 20, c.iters = 5;
    else if (a == "--bytes" && i + 1 < argc)
      c.bytes = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--iters" && i + 1 < argc)
      c.iters = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--check] [--quick] [--bytes N] [--iters N]\n", argv[0]);
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
  try {
    cudaStream_t s;
    d::cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    redist::cuda_space space(s);
    const redist::cuda_allocation on_stream{s, nullptr};
    cudaDeviceProp prop{};
    d::cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    std::printf("# bench_device_staging on %s: %zu bytes per size, %d iterations, medians\n", prop.name,
                c.bytes, c.iters);
    std::printf("# %7s %9s %12s %-8s %10s %9s %10s %9s %7s %6s %-6s %7s\n", "piece", "pieces", "bytes", "op",
                "time(us)", "algbw", "memcpy(us)", "memcpy", "ratio", "target", "", "#wrong");
    bool missed = false;
    std::size_t wrong_total = 0;
    for (const std::size_t piece : {256u, 1024u, 4096u, 16384u, 65536u, 262144u, 1048576u}) {
      const std::size_t pieces = std::max<std::size_t>(1, c.bytes / piece), total = pieces * piece;
      // Sources every other piece of a buffer twice the size: scattered, as a step's samples are.
      redist::cuda_tensor src(redist::dtype::u8, {static_cast<std::int64_t>(2 * total)}, on_stream);
      redist::cuda_tensor block(redist::dtype::u8, {static_cast<std::int64_t>(total)}, on_stream);
      redist::cuda_tensor back(redist::dtype::u8, {static_cast<std::int64_t>(2 * total)}, on_stream);
      std::vector<std::byte> host(2 * total);
      for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<std::byte>((i * 2654435761u) >> 13);
      d::cuda_check(cudaMemcpy(src.data(), host.data(), host.size(), cudaMemcpyHostToDevice), "cudaMemcpy");
      d::cuda_check(cudaMemset(back.data(), 0, 2 * total), "cudaMemset");
      auto* s0 = static_cast<std::byte*>(src.data());
      auto* b0 = static_cast<std::byte*>(block.data());
      auto* k0 = static_cast<std::byte*>(back.data());
      std::vector<const_segment> from;
      std::vector<segment> to;
      for (std::size_t i = 0; i < pieces; ++i) {
        from.push_back({s0 + 2 * i * piece, piece});
        to.push_back({k0 + 2 * i * piece, piece});
      }
      const double base = median_ms(s, c.iters, [&] {
        d::cuda_check(cudaMemcpyAsync(b0, s0, total, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
      });
      row g{"gather", median_ms(s, c.iters, [&] { space.gather(from, b0); }),
            base,     piece >= 16384 ? 0.8 : 0.5,
            total,    0};
      row sc{"scatter", median_ms(s, c.iters, [&] { space.scatter(b0, to); }),
             base,      piece >= 16384 ? 0.8 : 0.5,
             total,     0};
      if (c.check) {
        std::vector<std::byte> want(total), want_back(2 * total, std::byte{0});
        std::vector<const_segment> hf;
        std::vector<segment> ht;
        for (std::size_t i = 0; i < pieces; ++i) {
          hf.push_back({host.data() + 2 * i * piece, piece});
          ht.push_back({want_back.data() + 2 * i * piece, piece});
        }
        redist::host_space::gather(hf, want.data());
        redist::host_space::scatter(want.data(), ht);
        g.wrong = wrong(download(b0, total), want);
        sc.wrong = wrong(download(k0, 2 * total), want_back);
      }
      // bf16 elements of the same pieces cast to f32 with one element of padding each, then back.
      const std::size_t elements = piece / 2;
      redist::cuda_tensor wire(redist::dtype::f32, {static_cast<std::int64_t>(pieces * (elements + 1))},
                               on_stream);
      auto* w0 = static_cast<std::byte*>(wire.data());
      std::vector<d::cast_piece> out, in;
      for (std::size_t i = 0; i < pieces; ++i) {
        out.push_back({s0 + 2 * i * piece, w0 + i * (elements + 1) * 4, 0, elements, 1, redist::dtype::bf16});
        in.push_back({w0 + i * (elements + 1) * 4, k0 + 2 * i * piece, 0, elements, 1, redist::dtype::bf16});
      }
      const std::size_t wire_bytes = pieces * (elements + 1) * 4;
      const double wire_base = median_ms(s, c.iters, [&] {
        d::cuda_check(cudaMemcpyAsync(w0, s0, wire_bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
      });
      row to32{"to_f32",   median_ms(s, c.iters, [&] { space.run(out, d::cast_direction::to_f32); }),
               wire_base,  0.7,
               wire_bytes, 0};
      row from32{"from_f32", median_ms(s, c.iters, [&] { space.run(in, d::cast_direction::from_f32); }),
                 wire_base,  0.7,
                 wire_bytes, 0};
      if (c.check) {
        // The host space's casts of the same pieces: the wire, then the pieces cast back.
        std::vector<std::byte> want_wire(wire_bytes, std::byte{0}), want_back(2 * total, std::byte{0});
        for (std::size_t i = 0; i < pieces; ++i) {
          std::byte* w = want_wire.data() + i * (elements + 1) * 4;
          redist::host_space::to_f32(redist::dtype::bf16, host.data() + 2 * i * piece, 0, elements, w);
          redist::host_space::from_f32(redist::dtype::bf16, w, 0, elements, want_back.data() + 2 * i * piece);
        }
        to32.wrong = wrong(download(w0, wire_bytes), want_wire);
        from32.wrong = wrong(download(k0, 2 * total), want_back);
      }
      for (const row* r : {&g, &sc, &to32, &from32}) {
        print(piece, pieces, *r, missed);
        wrong_total += r->wrong;
      }
    }
    std::printf(
        "# targets: gather/scatter >= 0.8 of memcpy for pieces >= 16 KiB, >= 0.5 below; casts >= 0.7: %s\n",
        missed ? "some MISSED" : "all met");
    cudaStreamDestroy(s);
    return wrong_total == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_device_staging: %s\n", e.what());
    return 1;
  }
}
