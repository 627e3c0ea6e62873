// MPI tests of redist::mpi_device_communicator against the stand-in CUDA runtime of tests/nccl, whose
// "device" memory is host memory it allocated (so MPI can read it when told it is CUDA-aware): every
// operation on device buffers gives the bytes the host mpi_communicator gives on host buffers; staging moves
// in rounds of the budget with pinned memory allocated once; host buffers are never copied; CUDA-aware mode
// hands device pointers to MPI after polling an event; a stuck event and a CUDA error become redist::error.
// Each case runs on the world and on the world numbered backwards.
#include <cuda_runtime_api.h>
#include <doctest/doctest.h>
#include <mpi.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "../mpi/mpi_test.hpp"
#include "../nccl/stand_in.hpp"
#include "../unit/splitmix.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/comm/mpi/device.hpp"

namespace {

using redist::mpi_communicator;
using redist::mpi_device_communicator;
using redist::mpi_device_options;
using redist::test::all_ranks;
using bytes = std::vector<std::byte>;
using sizes = std::vector<std::size_t>;

const cudaStream_t stream =
    reinterpret_cast<cudaStream_t>(std::uintptr_t{0x5eed});  // checked by the stand-in

// Memory a test hands to the communicator: stand-in device memory (cudaMalloc) or host memory.
class buffer {
 public:
  buffer(std::size_t n, bool device) : n_(n), host_(device ? 0 : n) {
    if (device) {
      void* p = nullptr;
      REQUIRE(cudaMalloc(&p, n) == cudaSuccess);
      device_ = static_cast<std::byte*>(p);
    }
  }
  buffer(const bytes& content, bool device) : buffer(content.size(), device) {
    if (!content.empty()) std::memcpy(data(), content.data(), content.size());
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() {
    if (device_ != nullptr) cudaFree(device_);
  }
  std::byte* data() noexcept { return device_ != nullptr ? device_ : host_.data(); }
  std::span<std::byte> span() noexcept { return {data(), n_}; }
  bytes content() { return bytes(data(), data() + n_); }  // stand-in device memory is readable

 private:
  std::size_t n_;
  bytes host_;
  std::byte* device_ = nullptr;
};

std::byte pattern(std::uint64_t seed, std::size_t from, std::size_t to, std::size_t i) {
  return static_cast<std::byte>(redist::test::draw(seed ^ 0x77, from, to, i) & 0xFF);
}
bytes message(std::uint64_t seed, std::size_t from, std::size_t to, std::size_t n) {
  bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = pattern(seed, from, to, i);
  return b;
}

// Bytes from `from` to `to`: a quarter of the pairs none, the rest in [lo, hi).
std::size_t count(std::uint64_t seed, std::size_t from, std::size_t to, std::size_t lo, std::size_t hi) {
  const std::uint64_t d = redist::test::draw(seed ^ 0x51, from, to);
  return d % 4 == 0 ? 0 : lo + static_cast<std::size_t>((d >> 8) % (hi - lo));
}

sizes displs_of(const sizes& counts, std::size_t& total) {  // last rank first, 5 bytes apart
  sizes displs(counts.size());
  total = 0;
  for (std::size_t k = counts.size(); k-- > 0;) {
    displs[k] = total;
    total += counts[k] + 5;
  }
  return displs;
}

std::size_t rounds(std::size_t n, std::size_t unit) { return (n + unit - 1) / unit; }

struct copies {
  int d2h = stand_in_memcpys(1, 0);
  int h2d = stand_in_memcpys(0, 1);
  int d2d = stand_in_memcpys(1, 1);
  int h2h = stand_in_memcpys(0, 0);
};

// Runs every operation through `dev` on buffers in device memory (or host memory) and through `host` on
// host buffers; message sizes in [lo, hi). Each rank's copy counts are checked against what staging in
// rounds of `unit` bytes must take (unit 0: no copies at all). Whether every result matched.
bool run_all(const mpi_device_communicator& dev, const mpi_communicator& host, std::uint64_t seed,
             bool device, std::size_t lo, std::size_t hi, std::size_t unit) {
  const auto n = static_cast<std::size_t>(host.size());
  const auto me = static_cast<std::size_t>(host.rank());
  bool ok = true;
  const auto expect_copies = [&](const copies& before, std::size_t d2h, std::size_t h2d, std::size_t d2d) {
    const copies now;
    if (unit == 0) d2h = h2d = d2d = 0;
    const bool good = static_cast<std::size_t>(now.d2h - before.d2h) == d2h &&
                      static_cast<std::size_t>(now.h2d - before.h2d) == h2d &&
                      static_cast<std::size_t>(now.d2d - before.d2d) == d2d && now.h2h == before.h2h;
    if (!good) {
      MESSAGE("copies: D2H " << now.d2h - before.d2h << " (expected " << d2h << "), H2D "
                             << now.h2d - before.h2d << " (" << h2d << "), D2D " << now.d2d - before.d2d
                             << " (" << d2d << ")");
    }
    ok = ok && good;
  };

  // alltoallv, zero-byte pairs included.
  sizes sc(n), rc(n);
  for (std::size_t p = 0; p < n; ++p) {
    sc[p] = count(seed, me, p, lo, hi);
    rc[p] = count(seed, p, me, lo, hi);
  }
  std::size_t st = 0, rt = 0;
  const sizes sd = displs_of(sc, st), rd = displs_of(rc, rt);
  bytes send(st, std::byte{0xAB});
  for (std::size_t p = 0; p < n; ++p) {
    const bytes m = message(seed, me, p, sc[p]);
    std::copy(m.begin(), m.end(), send.begin() + static_cast<std::ptrdiff_t>(sd[p]));
  }
  {
    buffer dsend(send, device), drecv(bytes(rt, std::byte{0xEE}), device);
    bytes want(rt, std::byte{0xEE});
    const copies before;
    dev.alltoallv(dsend.span(), sc, sd, drecv.span(), rc, rd);
    std::size_t d2h = 0, h2d = 0;
    for (std::size_t p = 0; p < n; ++p) {
      if (p == me) continue;
      d2h += rounds(sc[p], unit == 0 ? 1 : unit);
      h2d += rounds(rc[p], unit == 0 ? 1 : unit);
    }
    expect_copies(before, device ? d2h : 0, device ? h2d : 0, device && sc[me] != 0 ? 1 : 0);
    host.alltoallv(send, sc, sd, want, rc, rd);
    ok = ok && drecv.content() == want;
  }

  // gatherv and scatterv from every root.
  for (std::size_t root = 0; root < n; ++root) {
    sizes counts(n);
    for (std::size_t p = 0; p < n; ++p) counts[p] = count(seed, p, root + 100, lo, hi);
    std::size_t total = 0;
    const sizes displs = displs_of(counts, total);
    const bool is_root = me == root;
    const bytes mine = message(seed, me, root, counts[me]);
    bytes want(is_root ? total : 0, std::byte{0xEE});
    host.gatherv(mine, want, counts, displs, static_cast<int>(root));
    buffer dmine(mine, device), dgot(bytes(want.size(), std::byte{0xEE}), device);
    copies before;
    dev.gatherv(dmine.span(), dgot.span(), counts, displs, static_cast<int>(root));
    std::size_t others = 0;
    for (std::size_t p = 0; p < n; ++p) others += p == root ? 0 : rounds(counts[p], unit == 0 ? 1 : unit);
    const std::size_t own = rounds(counts[me], unit == 0 ? 1 : unit);
    const std::size_t own_copy = device && is_root && counts[me] != 0 ? 1 : 0;
    expect_copies(before, device && !is_root ? own : 0, device && is_root ? others : 0, own_copy);
    ok = ok && dgot.content() == want;

    buffer dback(bytes(counts[me], std::byte{0xEE}), device);
    before = copies{};
    dev.scatterv(dgot.span(), counts, displs, dback.span(), static_cast<int>(root));
    expect_copies(before, device && is_root ? others : 0, device && !is_root ? own : 0, own_copy);
    ok = ok && dback.content() == mine;
  }

  // broadcast from every root (MPI_Ibcast rounds: every rank copies each round).
  for (std::size_t root = 0; root < n; ++root) {
    const std::size_t size = count(seed, root, 7, lo, hi) + 1;
    const bytes want = message(seed, root, 7, size);
    buffer buf(me == root ? want : bytes(size, std::byte{0xEE}), device);
    const copies before;
    dev.broadcast(buf.span(), static_cast<int>(root));
    const std::size_t r = rounds(size, unit == 0 ? 1 : unit);
    expect_copies(before, device && me == root ? r : 0, device && me != root ? r : 0, 0);
    ok = ok && buf.content() == want;
  }

  // send/recv around a ring (isend, then a blocking recv), one message per rank, on tag 5.
  {
    const std::size_t to = (me + 1) % n, from = (me + n - 1) % n;
    const std::size_t out = count(seed, me, to + 200, lo, hi), in = count(seed, from, me + 200, lo, hi);
    buffer dout(message(seed, me, to, out), device), din(bytes(in, std::byte{0xEE}), device);
    const copies before;
    auto r = dev.isend(dout.span(), static_cast<int>(to), 5);
    dev.recv(din.span(), static_cast<int>(from), 5);
    r.wait();
    const std::size_t u = unit == 0 ? 1 : unit;
    expect_copies(before, device ? rounds(out, u) : 0, device ? rounds(in, u) : 0, 0);
    ok = ok && din.content() == message(seed, from, me, in);
  }

  // A start_group exchange with every rank, itself included: each sends a message to every rank.
  {
    std::vector<std::unique_ptr<buffer>> outs, ins;
    auto g = dev.start_group();
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t to = (me + k) % n, from = (me + n - k) % n;
      outs.push_back(
          std::make_unique<buffer>(message(seed + 1, me, to, count(seed, me, to + 300, lo, hi)), device));
      ins.push_back(
          std::make_unique<buffer>(bytes(count(seed, from, me + 300, lo, hi), std::byte{0xEE}), device));
      g.send(outs.back()->span(), static_cast<int>(to));
      g.recv(ins.back()->span(), static_cast<int>(from));
    }
    // And one more message from the previous rank, spread over a host piece and a piece in `device` memory.
    const std::size_t prev = (me + n - 1) % n, next = (me + 1) % n;
    const std::size_t half = count(seed, prev, me + 400, lo, hi), whole = 2 * half + 3;
    buffer more_out(message(seed + 2, me, next, 2 * count(seed, me, next + 400, lo, hi) + 3), device);
    buffer head(half, false), tail(whole - half, device);
    g.send(more_out.span(), static_cast<int>(next));
    const std::array pieces{redist::segment{head.data(), half}, redist::segment{tail.data(), whole - half}};
    g.recv_pieces(pieces, static_cast<int>(prev));
    std::move(g).finish().wait();
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t from = (me + n - k) % n;
      ok = ok && ins[k]->content() == message(seed + 1, from, me, count(seed, from, me + 300, lo, hi));
    }
    bytes spread = head.content();
    const bytes rest = tail.content();
    spread.insert(spread.end(), rest.begin(), rest.end());
    ok = ok && spread == message(seed + 2, prev, me, whole);
  }

  // allgatherv (host result), with the sizes known and not, and allgather.
  {
    const bytes mine = message(seed, me, 999, count(seed, me, 999, lo, hi));
    buffer dmine(mine, device);
    std::vector<std::size_t> got_counts, want_counts;
    const bytes got = redist::allgatherv(dev, dmine.span(), &got_counts);
    ok = ok && got == redist::allgatherv(host, mine, &want_counts) && got_counts == want_counts;
    const std::vector<std::uint64_t> known(want_counts.begin(), want_counts.end());
    ok = ok && dev.allgatherv(dmine.span(), std::span<const std::uint64_t>(known)) == got;
    const std::uint64_t word = me * 3 + 1;
    std::vector<std::uint64_t> words(static_cast<std::size_t>(host.size())), want(words.size());
    dev.allgather(std::as_bytes(std::span(&word, 1)), std::as_writable_bytes(std::span(words)));
    host.allgather(std::as_bytes(std::span(&word, 1)), std::as_writable_bytes(std::span(want)));
    ok = ok && words == want;
  }
  return ok;
}

// Runs f(host) on the world and on the world numbered backwards, the stand-in reset before each.
void on_both(const std::function<void(const mpi_communicator&, const char*)>& f) {
  {
    stand_in_reset();
    stand_in_expect_stream(stream);
    const mpi_communicator world(MPI_COMM_WORLD);
    f(world, "the world");
  }
  {
    stand_in_reset();
    stand_in_expect_stream(stream);
    const auto reversed = redist::test::reversed_world();
    const mpi_communicator backwards(reversed.get());
    f(backwards, "the world numbered backwards");
  }
}

mpi_device_options staged(std::size_t staging = std::size_t{64} << 20) {
  return {.staging_bytes = staging, .cuda_aware = redist::mpi_cuda_aware::never};
}

}  // namespace

TEST_CASE("device buffers give the bytes host buffers give, zero-byte peers included") {
  REDIST_AGREED_SEED(seed);
  on_both([&](const mpi_communicator& host, const char* which) {
    INFO(which);
    const mpi_device_communicator dev(host, stream, staged());
    CHECK_FALSE(dev.cuda_aware());
    CHECK(all_ranks(run_all(dev, host, seed, true, 1, 300, std::size_t{64} << 20)));
    // A view of every rank backwards, over the wrapped communicator's group of the same ranks.
    std::vector<int> backwards(static_cast<std::size_t>(host.size()));
    for (std::size_t i = 0; i < backwards.size(); ++i) backwards[i] = host.size() - 1 - static_cast<int>(i);
    const mpi_device_communicator* view = dev.group(backwards);
    CHECK(view != nullptr);  // every rank is a member
    if (view != nullptr) {
      CHECK(view == dev.group(backwards));
      CHECK(view->rank() == host.size() - 1 - host.rank());
      CHECK(all_ranks(run_all(*view, *host.group(backwards), seed + 9, true, 1, 300, std::size_t{64} << 20)));
    }
    CHECK(stand_in_wrong_streams() == 0);
  });
}

TEST_CASE("staging moves in rounds of staging_bytes, pinned memory allocated once per direction") {
  REDIST_AGREED_SEED(seed);
  on_both([&](const mpi_communicator& host, const char* which) {
    INFO(which);
    const mpi_device_communicator dev(host, stream, staged(1000));
    CHECK(all_ranks(run_all(dev, host, seed, true, 10000, 100000, 1000)));  // some thirty operations
    CHECK(stand_in_count("cudaMallocHost") == 2);  // one per direction (self messages too)
    CHECK(stand_in_count("cudaFreeHost") == 0);
    CHECK(stand_in_wrong_streams() == 0);
  });
  CHECK(stand_in_count("cudaFreeHost") == stand_in_count("cudaMallocHost"));  // freed with the communicator
}

TEST_CASE("host buffers go straight to MPI: no copy, no pinned memory") {
  REDIST_AGREED_SEED(seed);
  on_both([&](const mpi_communicator& host, const char* which) {
    INFO(which);
    for (const std::size_t staging : {std::size_t{1000}, std::size_t{64} << 20}) {
      const mpi_device_communicator dev(host, stream, staged(staging));
      CHECK(all_ranks(run_all(dev, host, seed, false, 1, 5000, 0)));
    }
    CHECK(stand_in_count("cudaMemcpyAsync") == 0);
    CHECK(stand_in_count("cudaMallocHost") == 0);
    CHECK(stand_in_count("cudaEventRecord") == 0);
  });
}

TEST_CASE("CUDA-aware mode: device pointers go to MPI after an event on the stream is polled") {
  REDIST_AGREED_SEED(seed);
  on_both([&](const mpi_communicator& host, const char* which) {
    INFO(which);
    const mpi_device_communicator dev(host, stream, {.cuda_aware = redist::mpi_cuda_aware::always});
    CHECK(dev.cuda_aware());
    CHECK(all_ranks(run_all(dev, host, seed, true, 1, 3000, 0)));
    CHECK(stand_in_count("cudaMemcpyAsync") == 0);
    CHECK(stand_in_count("cudaMallocHost") == 0);
    // Each send: one event recorded, then polled, before MPI sees the pointer.
    const auto n = static_cast<std::size_t>(host.size());
    buffer out(bytes(100, std::byte{1}), true), in(100, true);
    const int records = stand_in_count("cudaEventRecord"), queries = stand_in_count("cudaEventQuery");
    auto r = dev.irecv(in.span(), static_cast<int>((static_cast<std::size_t>(host.rank()) + n - 1) % n), 3);
    CHECK(stand_in_count("cudaEventRecord") == records + 1);
    dev.send(out.span(), static_cast<int>((static_cast<std::size_t>(host.rank()) + 1) % n), 3);
    CHECK(stand_in_count("cudaEventRecord") == records + 2);
    CHECK(stand_in_count("cudaEventQuery") >= queries + 2);
    r.wait();
    CHECK(all_ranks(in.content() == bytes(100, std::byte{1})));
  });
}

TEST_CASE("an event that never completes fails at the deadline on every rank, never a hang") {
  on_both([&](const mpi_communicator& host, const char* which) {
    INFO(which);
    const auto n = static_cast<std::size_t>(host.size());
    const auto me = static_cast<std::size_t>(host.rank());
    for (const auto mode : {redist::mpi_cuda_aware::never, redist::mpi_cuda_aware::always}) {
      stand_in_event_ready_after(-1);
      const mpi_device_communicator dev(
          host, stream,
          {.staging_bytes = 4096, .cuda_aware = mode, .timeout = std::chrono::milliseconds(300)});
      buffer out(bytes(10000, std::byte{1}), true), in(10000, true);
      const auto o = redist::test::outcome_of([&] {
        auto g = dev.start_group();
        g.recv(in.span(), static_cast<int>((me + n - 1) % n));
        g.send(out.span(), static_cast<int>((me + 1) % n));
        std::move(g).finish().wait();
      });
      INFO(o.message);
      CHECK(all_ranks(o.redist_error && o.message.find("redist::mpi_device_communicator::group") == 0 &&
                      o.message.find("deadline of 300 ms") != std::string::npos));
      const auto later = redist::test::outcome_of([&] { dev.send(out.span(), static_cast<int>(me), 0); });
      CHECK(all_ranks(later.redist_error && later.message.find("failed earlier") != std::string::npos));
      stand_in_event_ready_after(0);
      MPI_Barrier(host.native());  // every rank has given up before the next mode starts
    }
  });
}

TEST_CASE("a CUDA error from cudaMemcpyAsync becomes a redist::error with CUDA's text") {
  on_both([&](const mpi_communicator& host, const char* which) {
    INFO(which);
    const auto n = static_cast<std::size_t>(host.size());
    const auto me = static_cast<std::size_t>(host.rank());
    const mpi_device_communicator dev(
        host, stream,
        {.cuda_aware = redist::mpi_cuda_aware::never, .timeout = std::chrono::milliseconds(2000)});
    buffer out(bytes(5000, std::byte{1}), true), in(5000, true);
    stand_in_fail("cudaMemcpyAsync", cudaErrorLaunchFailure);
    const auto o = redist::test::outcome_of([&] {
      auto g = dev.start_group();
      g.recv(in.span(), static_cast<int>((me + n - 1) % n));
      g.send(out.span(), static_cast<int>((me + 1) % n));
      std::move(g).finish().wait();
    });
    INFO(o.message);
    CHECK(all_ranks(o.redist_error && o.message.find("redist::mpi_device_communicator::group") == 0 &&
                    o.message.find("cudaMemcpyAsync failed: cudaErrorLaunchFailure: a scripted failure of "
                                   "the stand-in") != std::string::npos));
    MPI_Barrier(host.native());
  });
}
