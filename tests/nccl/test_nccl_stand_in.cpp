// Host tests of redist::nccl_communicator against a scripted stand-in for libnccl and the CUDA runtime
// (stand_in.cpp): the collectives at one rank byte for byte, host buffers staged and device buffers not,
// failures of NCCL calls, asynchronous errors and hangs becoming redist::error after one abort (revoke where
// the library has it), later calls refused, ncclAlltoAll only where the run-time library has it, a wrapped
// comm never destroyed, and group views that send to the right ranks of the comm. Built twice: against a
// 2.28.9 stand-in and an older one without ncclAlltoAll and ncclCommRevoke.
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <doctest/doctest.h>
#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "redist/comm/nccl.hpp"
#include "redist/comm/self.hpp"
#include "stand_in.hpp"

static_assert(redist::communicator<redist::nccl_communicator>);

namespace {

using redist::nccl_communicator;
using bytes = std::vector<std::byte>;
using sizes = std::vector<std::size_t>;
using namespace std::chrono_literals;

// Any value: the stand-in only checks that every call names it.
const cudaStream_t stream = reinterpret_cast<cudaStream_t>(std::uintptr_t{0x5eed});

// Whether this build's stand-in exports the entry points of NCCL 2.28.3 and later.
bool stand_in_is_current() { return dlsym(RTLD_DEFAULT, "ncclCommRevoke") != nullptr; }

void reset() {
  stand_in_reset();
  stand_in_expect_stream(stream);
}

// Nothing misused: no host memory handed to NCCL, every call on the stream, no call on a dead comm.
void check_clean() {
  CHECK(stand_in_host_pointers_to_nccl() == 0);
  CHECK(stand_in_wrong_streams() == 0);
  CHECK(stand_in_dead_comm_uses() == 0);
}

std::byte b(int v) { return static_cast<std::byte>(v & 0xFF); }

bytes iota_bytes(std::size_t n, int first) {
  bytes v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = b(first + static_cast<int>(i));
  return v;
}

// Stand-in device memory (host memory the stand-in reports as device), freed with the object.
class device_buffer {
 public:
  explicit device_buffer(std::size_t n) : n_(n) {
    void* p = nullptr;
    REQUIRE(cudaMalloc(&p, n) == cudaSuccess);
    p_ = static_cast<std::byte*>(p);
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer() { static_cast<void>(cudaFree(p_)); }
  std::span<std::byte> span() const { return {p_, n_}; }
  void assign(const bytes& v) const { std::copy(v.begin(), v.end(), p_); }
  bytes get() const { return {p_, p_ + n_}; }

 private:
  std::byte* p_ = nullptr;
  std::size_t n_;
};

// A buffer of `n` bytes, filled with `init`, in host or stand-in device memory.
class buffer {
 public:
  buffer(bool device, const bytes& init) : host_(init) {
    if (device) {
      dev_.emplace(init.size());
      dev_->assign(init);
    }
  }
  std::span<std::byte> span() { return dev_ ? dev_->span() : std::span<std::byte>(host_); }
  bytes get() const { return dev_ ? dev_->get() : host_; }

 private:
  bytes host_;
  std::optional<device_buffer> dev_;
};

struct p2p_entry {
  bool send;
  int peer;
  std::size_t bytes;
  bool operator==(const p2p_entry&) const = default;
};

std::vector<p2p_entry> p2p_log() {
  std::vector<p2p_entry> log;
  for (int i = 0; i < stand_in_p2p_count(); ++i) {
    int send = 0, peer = 0;
    std::size_t n = 0;
    stand_in_p2p(i, &send, &peer, &n);
    log.push_back({send != 0, peer, n});
  }
  return log;
}

// What a receive of n bytes from remote `peer` gets from the stand-in.
bytes remote_bytes(int peer, std::size_t n) {
  bytes v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte{stand_in_remote_byte(peer, i)};
  return v;
}

// The errors of the abort path: what the caller is told and what NCCL was asked to do.
int aborts() { return stand_in_count("ncclCommAbort"); }
int revokes() { return stand_in_count("ncclCommRevoke"); }

}  // namespace

TEST_CASE("one rank: every collective moves the right bytes, from host and from device memory") {
  for (const bool device : {false, true}) {
    CAPTURE(device);
    reset();
    {
      const redist::self_communicator host;
      const nccl_communicator c = nccl_communicator::create(host, 0, stream);
      CHECK(stand_in_count("ncclGetUniqueId") == 1);
      CHECK(stand_in_last_blocking() == 0);
      REQUIRE(c.size() == 1);
      REQUIRE(c.rank() == 0);

      // alltoallv: 5 bytes from offset 2 to offset 1; the rest untouched.
      buffer send(device, iota_bytes(8, 10)), recv(device, bytes(9, b(0xEE)));
      c.alltoallv(send.span(), sizes{5}, sizes{2}, recv.span(), sizes{5}, sizes{1});
      bytes want(9, b(0xEE));
      for (int i = 0; i < 5; ++i) want[static_cast<std::size_t>(1 + i)] = b(12 + i);
      CHECK(recv.get() == want);

      buffer gsend(device, iota_bytes(4, 40)), grecv(device, bytes(6, b(0xEE)));
      c.gatherv(gsend.span(), grecv.span(), sizes{4}, sizes{2}, 0);
      CHECK(grecv.get() == bytes{b(0xEE), b(0xEE), b(40), b(41), b(42), b(43)});

      buffer ssend(device, iota_bytes(6, 60)), srecv(device, bytes(3, b(0xEE)));
      c.scatterv(ssend.span(), sizes{3}, sizes{3}, srecv.span(), 0);
      CHECK(srecv.get() == bytes{b(63), b(64), b(65)});

      buffer bc(device, iota_bytes(5, 70));
      c.broadcast(bc.span(), 0);
      CHECK(bc.get() == iota_bytes(5, 70));
      CHECK(stand_in_count("ncclBroadcast") == 1);

      buffer asend(device, iota_bytes(3, 80)), arecv(device, bytes(3, b(0)));
      c.alltoall(asend.span(), arecv.span(), 3);
      CHECK(arecv.get() == iota_bytes(3, 80));

      buffer mine(device, iota_bytes(7, 90));
      sizes counts;
      CHECK(redist::allgatherv(c, mine.span(), &counts) == iota_bytes(7, 90));
      CHECK(counts == sizes{7});
      const std::uint64_t word = 0x1234567890ULL;
      std::uint64_t gathered = 0;
      c.allgather(std::as_bytes(std::span(&word, 1)), std::as_writable_bytes(std::span(&gathered, 1)));
      CHECK(gathered == word);

      // One message to itself, received over a host piece and a device piece.
      buffer whole(device, iota_bytes(10, 100));
      bytes head(4, b(0));
      const device_buffer tail(6);
      auto g = c.start_group();
      g.send(whole.span(), 0);
      const std::array pieces{redist::segment{head.data(), head.size()},
                              redist::segment{tail.span().data(), 6}};
      g.recv_pieces(pieces, 0);
      std::move(g).finish().wait();
      CHECK(head == iota_bytes(4, 100));
      CHECK(tail.get() == iota_bytes(6, 104));
      CHECK(stand_in_live_events() == 0);
    }
    // Owned: finalized and destroyed, never aborted; its scratch freed.
    CHECK(stand_in_count("ncclCommFinalize") == 1);
    CHECK(stand_in_count("ncclCommDestroy") == 1);
    CHECK(aborts() == 0);
    CHECK(stand_in_live_device_allocations() == 0);
    check_clean();
  }
}

TEST_CASE("a failing send: one abort, an error naming the op and NCCL's text, every later call refused") {
  reset();
  stand_in_set_version(22800);  // no revoke: abort
  const nccl_communicator c(stand_in_new_comm(4, 2), stream);
  const device_buffer send(12), recv(12);
  const sizes counts{3, 3, 3, 3}, displs{0, 3, 6, 9};
  stand_in_fail("ncclSend", ncclSystemError);
  std::string what;
  try {
    c.alltoallv(send.span(), counts, displs, recv.span(), counts, displs);
  } catch (const redist::error& e) {
    what = e.what();
  }
  CAPTURE(what);
  CHECK(what.find("redist::nccl_communicator::alltoallv: ncclSend failed") == 0);
  CHECK(what.find("unhandled system error (stand-in)") != std::string::npos);
  CHECK(what.find("stand-in: ncclSend was told to fail") != std::string::npos);  // ncclGetLastError
  CHECK(what.find("aborted and freed (ncclCommAbort)") != std::string::npos);
  CHECK(aborts() == 1);
  CHECK(stand_in_count("ncclGroupStart") == stand_in_count("ncclGroupEnd"));  // the group was closed
  CHECK(c.native() == nullptr);

  const int p2p_before = stand_in_p2p_count() + stand_in_count("ncclSend");
  CHECK_THROWS_WITH_AS(
      c.gatherv(send.span(), recv.span(), counts, displs, 0),
      doctest::Contains("redist::nccl_communicator::gatherv: the communicator was aborted by an "
                        "earlier failure and refuses every call (redist::nccl_communicator::"
                        "alltoallv: ncclSend failed"),
      redist::error);
  CHECK_THROWS_WITH_AS((void)c.isend(send.span(), 1, 0), doctest::Contains("refuses every call"),
                       redist::error);
  std::uint64_t word = 1;
  CHECK_THROWS_WITH_AS(
      c.allgather(std::as_bytes(std::span(&word, 1)), std::as_writable_bytes(std::span(&word, 1))),
      doctest::Contains("refuses every call"), redist::error);
  CHECK(stand_in_p2p_count() + stand_in_count("ncclSend") == p2p_before);
  CHECK(aborts() == 1);
  check_clean();
}

TEST_CASE("a failing ncclGroupEnd and a failing CUDA event are errors after one abort") {
  reset();
  stand_in_set_version(22800);
  {
    const nccl_communicator c(stand_in_new_comm(4, 2), stream);
    const device_buffer buf(8);
    stand_in_fail("ncclGroupEnd", ncclInternalError);
    CHECK_THROWS_WITH_AS(
        c.send(buf.span(), 3, 0),
        doctest::Contains("redist::nccl_communicator::send: ncclGroupEnd failed: internal error"),
        redist::error);
    CHECK(aborts() == 1);
  }
  reset();
  stand_in_set_version(22800);
  {
    const nccl_communicator c(stand_in_new_comm(4, 2), stream);
    const device_buffer buf(8);
    stand_in_fail("cudaEventQuery", cudaErrorLaunchFailure);
    auto r = c.irecv(buf.span(), 1, 0);
    CHECK(r.pending());
    CHECK_THROWS_WITH_AS(r.wait(), doctest::Contains("redist::nccl_communicator::irecv: "), redist::error);
    CHECK(!r.pending());
    CHECK(aborts() == 1);
  }
  check_clean();
}

TEST_CASE("an asynchronous NCCL error during wait() aborts and throws") {
  reset();
  stand_in_set_version(22800);
  const nccl_communicator c(stand_in_new_comm(4, 2), stream);
  const device_buffer buf(16);
  auto r = c.ibroadcast(buf.span(), 0);
  stand_in_async(ncclRemoteError);
  CHECK_THROWS_WITH_AS(
      r.wait(),
      doctest::Contains("redist::nccl_communicator::ibroadcast: NCCL reported an asynchronous "
                        "error: remote process exited or there was a network error"),
      redist::error);
  CHECK(aborts() == 1);
  CHECK_THROWS_WITH_AS(c.broadcast(buf.span(), 0), doctest::Contains("refuses every call"), redist::error);
  check_clean();
}

TEST_CASE("a hang ends at the deadline: never ready, forever in progress, or a request dropped pending") {
  const redist::nccl_options fast{.timeout = 50ms};
  using clock = std::chrono::steady_clock;
  reset();
  stand_in_set_version(22800);
  {
    const nccl_communicator c(stand_in_new_comm(4, 2), stream, fast);
    const device_buffer buf(8);
    stand_in_event_ready_after(-1);
    auto r = c.isend(buf.span(), 1, 0);
    const auto start = clock::now();
    CHECK_THROWS_WITH_AS(r.wait(),
                         doctest::Contains("redist::nccl_communicator::isend: did not complete within the "
                                           "deadline of 50 ms"),
                         redist::error);
    const auto took = clock::now() - start;
    CHECK(took >= 50ms);
    CHECK(took < 5s);
    CHECK(aborts() == 1);
  }
  reset();
  stand_in_set_version(22800);
  {
    const nccl_communicator c(stand_in_new_comm(4, 2), stream, fast);
    const device_buffer buf(8);
    stand_in_in_progress(-1);  // a nonblocking ncclGroupEnd that never finishes enqueueing
    CHECK_THROWS_WITH_AS((void)c.isend(buf.span(), 1, 0),
                         doctest::Contains("redist::nccl_communicator::isend: did not complete within the "
                                           "deadline of 50 ms"),
                         redist::error);
    CHECK(aborts() == 1);
  }
  reset();
  stand_in_set_version(22800);
  {
    const nccl_communicator c(stand_in_new_comm(4, 2), stream, fast);
    const device_buffer buf(8);
    stand_in_in_progress(3);  // in progress for a few polls, then enqueued: no error
    c.recv(buf.span(), 1, 0);
    CHECK(buf.get() == remote_bytes(1, 8));
    stand_in_in_progress(0);
    stand_in_event_ready_after(-1);
    { auto dropped = c.irecv(buf.span(), 3, 0); }  // waits up to the deadline, swallows the error
    CHECK(aborts() == 1);
    CHECK(stand_in_live_events() == 0);
  }
  reset();
  {
    stand_in_in_progress(-1);
    const redist::self_communicator host;
    CHECK_THROWS_WITH_AS(
        (void)nccl_communicator::create(host, 0, stream, fast),
        doctest::Contains("ncclCommInitRankConfig did not complete within the deadline of 50 ms"),
        redist::error);
    CHECK(aborts() == 1);
  }
  reset();
  {
    stand_in_fail("ncclGetUniqueId", ncclSystemError);
    const redist::self_communicator host;
    CHECK_THROWS_WITH_AS((void)nccl_communicator::create(host, 0, stream),
                         doctest::Contains("ncclGetUniqueId failed: unhandled system error"), redist::error);
    CHECK(stand_in_count("ncclCommInitRankConfig") == 0);
  }
  check_clean();
}

TEST_CASE("ncclCommRevoke where the library has it (2.28.7 and the symbol), ncclCommAbort otherwise") {
  const redist::nccl_options fast{.timeout = 50ms};
  const bool current = stand_in_is_current();
  for (const int version : {22809, 22806}) {
    CAPTURE(version);
    reset();
    stand_in_set_version(version);
    const bool revoke = current && version >= 22807;
    {
      const nccl_communicator c(stand_in_new_comm(4, 2), stream, fast);
      const device_buffer buf(8);
      stand_in_fail("ncclRecv", ncclInvalidUsage);
      std::string what;
      try {
        c.recv(buf.span(), 0, 0);
      } catch (const redist::error& e) {
        what = e.what();
      }
      CHECK(what.find(revoke ? "your ncclComm_t was revoked (ncclCommRevoke)" : "aborted and freed") !=
            std::string::npos);
      CHECK(revokes() == (revoke ? 1 : 0));
      CHECK(aborts() == (revoke ? 0 : 1));
      CHECK((c.native() != nullptr) == revoke);  // a revoked comm stays valid, an aborted one is freed
    }
    CHECK(stand_in_count("ncclCommDestroy") == 0);  // wrapped: the user's to destroy
    check_clean();
  }
  // Owned and revoked: destroyed (not finalized: finalizing a revoked comm is invalid).
  reset();
  {
    const redist::self_communicator host;
    const nccl_communicator c = nccl_communicator::create(host, 0, stream, fast);
    const device_buffer buf(8);
    stand_in_event_ready_after(-1);
    CHECK_THROWS_WITH_AS(c.broadcast(buf.span(), 0),
                         doctest::Contains(current ? "the communicator was revoked"
                                                   : "the communicator was aborted (ncclCommAbort)"),
                         redist::error);
  }
  CHECK(revokes() == (current ? 1 : 0));
  CHECK(aborts() == (current ? 0 : 1));
  CHECK(stand_in_count("ncclCommFinalize") == 0);
  CHECK(stand_in_count("ncclCommDestroy") == (current ? 1 : 0));
  // A revoke that never settles falls back to ncclCommAbort.
  if (current) {
    reset();
    const nccl_communicator c(stand_in_new_comm(4, 2), stream, fast);
    const device_buffer buf(8);
    stand_in_event_ready_after(-1);
    auto r = c.isend(buf.span(), 1, 0);
    stand_in_in_progress(-1);
    CHECK_THROWS_WITH_AS(r.wait(), doctest::Contains("aborted and freed"), redist::error);
    CHECK(revokes() == 1);
    CHECK(aborts() == 1);
  }
  check_clean();
}

TEST_CASE("uniform alltoall: ncclAlltoAll only where the run-time library has it, grouped otherwise") {
  const bool current = stand_in_is_current();
  for (const int version : {22809, 22803, 22802}) {
    CAPTURE(version);
    reset();
    stand_in_set_version(version);
    const nccl_communicator c(stand_in_new_comm(4, 2), stream);
    const device_buffer send(12), recv(12);
    send.assign(iota_bytes(12, 1));
    recv.assign(bytes(12, b(0)));
    c.alltoall(send.span(), recv.span(), 3);
    const bool collective = current && version >= 22803;
    CHECK(stand_in_count("ncclAlltoAll") == (collective ? 1 : 0));
    CHECK(stand_in_count("ncclSend") == (collective ? 0 : 3));
    CHECK(stand_in_count("ncclRecv") == (collective ? 0 : 3));
    const bytes got = recv.get();
    CHECK(bytes(got.begin() + 6, got.begin() + 9) == iota_bytes(3, 7));  // its own block
    if (!collective) CHECK(bytes(got.begin(), got.begin() + 3) == remote_bytes(0, 3));
    // On a view (not all ranks in order) it is always grouped.
    const int sends = stand_in_count("ncclSend");
    const std::vector<int> reversed{3, 2, 1, 0};
    const nccl_communicator* v = c.group(reversed);
    REQUIRE(v != nullptr);
    CHECK(v->rank() == 1);
    v->alltoall(send.span(), recv.span(), 3);
    CHECK(stand_in_count("ncclSend") == sends + 3);
    // All ranks in order is the whole comm again.
    const std::vector<int> all{0, 1, 2, 3};
    c.group(all)->alltoall(send.span(), recv.span(), 3);
    CHECK(stand_in_count("ncclAlltoAll") == (collective ? 2 : 0));
    check_clean();
  }
}

TEST_CASE(
    "a wrapped comm is never destroyed; host buffers are staged, device buffers go to NCCL as they are") {
  reset();
  const ncclComm_t user = stand_in_new_comm(4, 2);
  {
    const nccl_communicator c(user, stream);
    CHECK(c.native() == user);
    CHECK(c.size() == 4);
    CHECK(c.rank() == 2);

    const device_buffer dev(10);
    dev.assign(iota_bytes(10, 5));
    c.send(dev.span(), 1, 0);
    c.recv(dev.span(), 3, 0);
    CHECK(dev.get() == remote_bytes(3, 10));
    CHECK(stand_in_count("cudaMemcpyAsync") == 0);
    CHECK(stand_in_count("cudaMallocAsync") == 0);

    bytes host = iota_bytes(10, 5);
    c.send(host, 1, 0);
    CHECK(stand_in_memcpys(0, 1) == 1);  // staged in: host (pinned) to device
    auto r = c.irecv(host, 3, 0);
    r.wait();
    CHECK(host == remote_bytes(3, 10));
    CHECK(stand_in_memcpys(1, 0) == 1);             // staged out: device to host (pinned)
    CHECK(stand_in_count("cudaMallocAsync") == 1);  // one scratch, reused

    // Two staged operations in flight at once need two scratch buffers.
    bytes a(8), other(8);
    auto ra = c.irecv(a, 1, 0);
    auto rb = c.irecv(other, 3, 0);
    CHECK(stand_in_count("cudaMallocAsync") == 2);
    rb.wait();
    ra.wait();
    CHECK(a == remote_bytes(1, 8));
    CHECK(other == remote_bytes(3, 8));

    // A host buffer sent to several peers is staged once.
    const int before = stand_in_memcpys(0, 1);
    auto g = c.start_group();
    for (const int peer : {0, 1, 3}) g.send(host, peer);
    std::move(g).finish().wait();
    CHECK(stand_in_memcpys(0, 1) == before + 1);
  }
  CHECK(stand_in_count("ncclCommDestroy") == 0);
  CHECK(stand_in_count("ncclCommFinalize") == 0);
  CHECK(aborts() == 0);
  CHECK(stand_in_live_device_allocations() == 0);
  CHECK(stand_in_live_events() == 0);
  check_clean();
}

TEST_CASE("group views: members only, cached, their transfers go to the comm's ranks") {
  reset();
  {
    const nccl_communicator one(stand_in_new_comm(1, 0), stream);
    const std::vector<int> just0{0};
    const nccl_communicator* v = one.group(just0);
    REQUIRE(v != nullptr);
    CHECK(v->size() == 1);
    const bytes mine = iota_bytes(3, 1);
    CHECK(redist::allgatherv(*v, mine) == mine);
    bytes gathered(3);
    v->allgather(mine, gathered);
    CHECK(gathered == mine);
  }
  const nccl_communicator c(stand_in_new_comm(4, 2), stream);
  const std::vector<int> outside{1, 3}, pair{2, 0}, swapped{0, 2}, bad{0, 4}, twice{2, 2};
  CHECK(c.group(outside) == nullptr);
  CHECK_THROWS_WITH_AS((void)c.group(bad), doctest::Contains("rank 4 is out of range"), redist::error);
  CHECK_THROWS_WITH_AS((void)c.group(twice), doctest::Contains("appears more than once"), redist::error);
  const nccl_communicator* v = c.group(pair);
  REQUIRE(v != nullptr);
  CHECK(c.group(pair) == v);
  CHECK(v->size() == 2);
  CHECK(v->rank() == 0);
  CHECK(c.group(swapped)->rank() == 1);

  const device_buffer send(6), recv(6);
  send.assign(iota_bytes(6, 30));
  // gatherv to the view's rank 1, the comm's rank 0.
  v->gatherv(send.span().first(4), {}, {}, {}, 1);
  CHECK(p2p_log() == std::vector<p2p_entry>{{true, 0, 4}});
  // alltoallv: 2 bytes to the view's rank 1 (the comm's 0), 3 from it.
  v->alltoallv(send.span(), sizes{1, 2}, sizes{0, 1}, recv.span(), sizes{1, 3}, sizes{0, 1});
  CHECK(p2p_log() == std::vector<p2p_entry>{{true, 0, 4}, {true, 0, 2}, {false, 0, 3}});
  const bytes got = recv.get();
  CHECK(got[0] == b(30));  // its own block
  CHECK(bytes(got.begin() + 1, got.begin() + 4) == remote_bytes(0, 3));
  // A view's collectives are point to point: an allgather of 8 bytes is a send of them to its other rank
  // (the comm's 0) and a receive of as many.
  const int gathers = stand_in_count("ncclAllGather");
  const nccl_communicator* w = c.group(swapped);
  const std::uint64_t word = 5;
  std::uint64_t words[2] = {0, 0};
  w->allgather(std::as_bytes(std::span(&word, 1)), std::as_writable_bytes(std::span(words)));
  CHECK(stand_in_count("ncclAllGather") == gathers);
  CHECK(words[1] == 5);
  const auto log = p2p_log();
  CHECK(std::vector<p2p_entry>(log.end() - 2, log.end()) ==
        std::vector<p2p_entry>{{true, 0, 8}, {false, 0, 8}});
  // Peers of a view's group are its ranks.
  auto g = v->start_group();
  CHECK_THROWS_WITH_AS(g.send(send.span(), 2), doctest::Contains("names rank 2, out of range"),
                       redist::error);
  // A view of a view maps through both.
  const std::vector<int> inner{1, 0};
  const nccl_communicator* vv = v->group(inner);
  REQUIRE(vv != nullptr);
  CHECK(vv->rank() == 1);
  vv->send(send.span().first(1), 0, 0);  // the view's rank 1, the comm's rank 0
  CHECK(p2p_log().back() == p2p_entry{true, 0, 1});
  check_clean();
}
