// Benchmark of redist::redistribute() on device tensors (cuda_tensor, cuda_space on each rank's stream),
// nccl-tests style, over NCCL (nccl_communicator, one GPU per rank) or over host-staged MPI
// (mpi_device_communicator forced to stage through pinned memory, ranks may share a GPU), against the code a
// careful user writes by hand for the same bytes: one pack kernel, the exchange (one group of
// ncclSend/ncclRecv; or one D2H copy, MPI_Ialltoallv per key, one H2D copy), one unpack kernel into per-key
// buffers in the consumer's order (its own samples read from its batch). The workload and the layouts are
// bench_redistribute's. Prints median times (max over ranks), algbw, busbw, the ratios side by side, #wrong
// (with --check every byte is verified on the host), and the plan's traffic matrix (rank x rank bytes), which
// --matrix writes in the file format of nccl-tests' alltoallv_perf so that it can replay the pattern.
//
//   mpirun -np 8 ./example_bench_redistribute_device --comm nccl --check   a multi-GPU node, one GPU per rank
//   mpirun -np 4 ./example_bench_redistribute_device --comm mpi --check    ranks share GPUs (rank mod GPUs)
//   ./example_bench_redistribute_device                                    no arguments: --quick --check
// More: --comm auto (NCCL where every rank of a node has its own GPU, else mpi), --samples N (per rank,
// 1024), --mean-tokens X (1000), --sigma X (1), --iters N (10), --warmup N (2), --budget BYTES (staging
// budget, redistribute_options' default), --staging BYTES (pinned memory per direction of the MPI
// communicator, 64 MiB), --seed N (1), --matrix PREFIX (rank 0 writes PREFIX<layout>.txt). Exits 77 when a
// rank has no GPU (skipped), non-zero on a wrong byte, when the plan and the hand-written exchange would
// move different bytes between some pair of ranks, or on any error; targets missed are reported, not failed.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <numbers>
#include <string>
#include <string_view>
#include <vector>

#include "bench_common.hpp"
#include "bench_workload.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/comm/mpi/device.hpp"
#include "redist/comm/nccl.hpp"
#include "redist/core/cuda/space.cuh"
#include "redist/core/cuda/tensor.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/traffic_file.hpp"
#include "redist/redistribute.hpp"

namespace {

namespace d = redist::detail;
using redist::cuda_tensor;
using redist::dtype;
using redist::sample_id;
using redist::bench::say;
using device_batch = redist::sequence_batch<cuda_tensor>;

// ---- configuration ----------------------------------------------------------------------------------------

struct config {
  std::string comm = "auto";  // nccl | mpi | auto
  std::size_t samples = 1024;
  double mean_tokens = 1000;
  double sigma = 1;
  int warmup = 2;
  int iters = 10;
  std::size_t budget = redist::redistribute_options{}.max_staging_bytes;
  std::size_t staging = redist::mpi_device_options{}.staging_bytes;
  std::uint64_t seed = 1;
  std::string matrix;  // file prefix, empty: none written
  bool check = false;
  bool quick = false;
};

config parse(int argc, char** argv) {
  redist::bench::command_line args(
      argc, argv, "bench_redistribute_device",
      "[--check] [--quick] [--comm nccl|mpi|auto] [--samples N] [--mean-tokens X] "
      "[--sigma X] [--iters N] [--warmup N] [--budget BYTES] [--staging BYTES] "
      "[--seed N] [--matrix PREFIX]",
      "--quick --check");
  config c;
  if (args.empty()) c.quick = c.check = true;
  bool sized = false;
  while (args.next(c.check, c.quick)) {
    const std::string_view a = args.option();
    if (a == "--comm") {
      c.comm = args.value();
      if (c.comm != "nccl" && c.comm != "mpi" && c.comm != "auto") args.fail("--comm is nccl, mpi or auto");
    } else if (a == "--samples") {
      c.samples = static_cast<std::size_t>(args.integer_at_least(1));
      sized = true;
    } else if (a == "--mean-tokens") {
      c.mean_tokens = args.positive();
      sized = true;
    } else if (a == "--sigma") {
      c.sigma = args.positive();
    } else if (a == "--iters") {
      c.iters = static_cast<int>(std::clamp<std::uint64_t>(args.integer(), 1, 100000));
    } else if (a == "--warmup") {
      c.warmup = static_cast<int>(std::min<std::uint64_t>(args.integer(), 100000));
    } else if (a == "--budget") {
      c.budget = static_cast<std::size_t>(args.integer_at_least(1));
    } else if (a == "--staging") {
      c.staging = static_cast<std::size_t>(args.integer_at_least(1));
    } else if (a == "--seed") {
      c.seed = args.integer();
    } else if (a == "--matrix") {
      c.matrix = args.value();
    } else {
      args.unknown();
    }
  }
  if (c.quick && !sized) {
    c.samples = 16;
    c.mean_tokens = 64;
  }
  if (c.quick) {
    c.warmup = std::min(c.warmup, 1);
    c.iters = std::min(c.iters, 3);
  }
  return c;
}

// ---- the workload: bench_redistribute's (bench_workload.hpp) --------------------------------------------

using redist::bench::key_bytes;
using redist::bench::key_count;
using redist::bench::keys;
using redist::bench::layout;
using redist::bench::make_layout;
using redist::bench::tokens_of;

// The bytes of key k of sample id.
void expected_bytes(const config& c, sample_id id, std::size_t k, std::byte* out) {
  redist::bench::expected_bytes(c, id, k, tokens_of(c, id), out);
}

// This rank's batch, built on the host and uploaded to device tensors on the stream.
device_batch produce(const layout& l, int me, const config& c, cudaStream_t s) {
  const auto& ids = l.produced[static_cast<std::size_t>(me)];
  redist::seqlen_table lens;
  std::int64_t total = 0;
  for (sample_id id : ids) {
    const std::int64_t one[] = {tokens_of(c, id)};
    lens.push_back(one);
    total += one[0];
  }
  std::vector<device_batch::field> fields;
  for (std::size_t k = 0; k < key_count; ++k) {
    std::vector<std::int64_t> shape{total};
    for (auto e : keys[k].trailing()) shape.push_back(e);
    cuda_tensor t(keys[k].type, shape, {s, nullptr});
    std::vector<std::byte> host(t.nbytes());
    std::size_t at = 0;
    for (sample_id id : ids) {
      expected_bytes(c, id, k, host.data() + at);
      at += key_bytes(c, id, k);
    }
    d::cuda_check(cudaMemcpyAsync(t.data(), host.data(), host.size(), cudaMemcpyHostToDevice, s), "upload");
    d::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");  // before `host` goes
    fields.push_back({keys[k].name, keys[k].type, keys[k].trailing(), lens, std::move(t)});
  }
  return device_batch(ids, std::move(fields));
}

// ---- the hand-written code --------------------------------------------------------------------------------

// One copy of a piece table: `bytes` from src[from_buf] + from to dst[to_buf] + to. Offsets into buffers
// named by index, so that one table serves buffers allocated anew on every call.
struct piece {
  std::uint64_t from, to;
  std::uint32_t bytes;
  std::uint8_t from_buf, to_buf;
};
struct buffers {
  const std::byte* src[key_count + 1];  // the batch's keys, then the receive buffer
  std::byte* dst[key_count];            // the send buffer (pack) or the per-key outputs (unpack)
};

template <class T>
__device__ void copy_as(const std::byte* from, std::byte* to, std::uint32_t bytes) {
  const auto* s = reinterpret_cast<const T*>(from);
  auto* t = reinterpret_cast<T*>(to);
  for (std::uint32_t i = threadIdx.x; i < bytes / sizeof(T); i += blockDim.x) t[i] = s[i];
}

// One block per piece; each piece copied in the widest word both ends and its size are aligned to.
__global__ void copy_pieces(const piece* pieces, std::size_t count, buffers b) {
  for (std::size_t p = blockIdx.x; p < count; p += gridDim.x) {
    const piece x = pieces[p];
    const std::byte* from = b.src[x.from_buf] + x.from;
    std::byte* to = b.dst[x.to_buf] + x.to;
    const auto align =
        reinterpret_cast<std::uintptr_t>(from) | reinterpret_cast<std::uintptr_t>(to) | x.bytes;
    if (align % 16 == 0)
      copy_as<uint4>(from, to, x.bytes);
    else if (align % 8 == 0)
      copy_as<std::uint64_t>(from, to, x.bytes);
    else if (align % 4 == 0)
      copy_as<std::uint32_t>(from, to, x.bytes);
    else if (align % 2 == 0)
      copy_as<std::uint16_t>(from, to, x.bytes);
    else
      copy_as<std::uint8_t>(from, to, x.bytes);
  }
}

// A piece table on the device, built once on the host. Adjacent copies are merged, as code that knows its
// layout would, and long ones cut into 64 KiB pieces (at 64 KiB offsets, so alignment holds) to spread them
// over the GPU's blocks.
class piece_table {
 public:
  void add(std::uint8_t from_buf, std::size_t from, std::uint8_t to_buf, std::size_t to, std::size_t bytes) {
    if (!host_.empty()) {
      piece& last = host_.back();
      if (last.from_buf == from_buf && last.to_buf == to_buf && last.from + last.bytes == from &&
          last.to + last.bytes == to && last.bytes + bytes <= chunk) {
        last.bytes += static_cast<std::uint32_t>(bytes);
        return;
      }
    }
    for (std::size_t at = 0; at < bytes; at += chunk)
      host_.push_back(
          {from + at, to + at, static_cast<std::uint32_t>(std::min(chunk, bytes - at)), from_buf, to_buf});
  }
  void upload(cudaStream_t s) {
    device_ = cuda_tensor(dtype::u8, {static_cast<std::int64_t>(host_.size() * sizeof(piece))}, {s, nullptr});
    d::cuda_check(cudaMemcpyAsync(device_.data(), host_.data(), device_.nbytes(), cudaMemcpyHostToDevice, s),
                  "upload");
    d::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }
  void run(const buffers& b, cudaStream_t s) const {
    if (host_.empty()) return;
    const auto blocks = static_cast<unsigned>(std::min<std::size_t>(host_.size(), 8192));
    copy_pieces<<<blocks, 256, 0, s>>>(static_cast<const piece*>(device_.data()), host_.size(), b);
    d::cuda_check(cudaGetLastError(), "copy_pieces");
  }

 private:
  static constexpr std::size_t chunk = 64 << 10;
  std::vector<piece> host_;
  cuda_tensor device_;
};

// The hand-written exchange's layout: key-major send and receive buffers (key k's region starts at a 256-byte
// boundary, so that every word of a row is aligned), region k holding per peer rank (ascending, this rank
// left out) that peer's wanted ids in its order. Only bytes that cross ranks move, exactly the plan's.
struct hand_plan {
  std::size_t send_bytes = 0, recv_bytes = 0;               // buffer sizes, padding included
  std::array<std::size_t, key_count> send_at{}, recv_at{};  // region starts
  std::array<std::vector<std::size_t>, key_count> send_counts, send_displs, recv_counts, recv_displs;
  std::array<std::size_t, key_count> out_bytes{};
  std::vector<std::vector<std::size_t>> recv_of;  // per key, per wanted position: where it lands (or npos)
  // The same counts and displacements as MPI's ints (send counts, send displs, recv counts, recv displs).
  std::array<std::array<std::vector<int>, 4>, key_count> mpi_counts;
  piece_table pack, unpack;
};

int as_count(std::size_t n) {
  if (n > static_cast<std::size_t>(INT32_MAX))
    d::fail("bench_redistribute_device: ", n, " bytes exceed an MPI count");
  return static_cast<int>(n);
}

constexpr std::size_t npos = static_cast<std::size_t>(-1);
std::size_t round_up(std::size_t n) { return (n + 255) / 256 * 256; }

hand_plan make_hand_plan(const layout& l, const device_batch& local, int me, const config& c,
                         cudaStream_t s) {
  const std::size_t P = l.wanted.size();
  const auto& want = l.wanted[static_cast<std::size_t>(me)];
  hand_plan h;
  h.recv_of.assign(key_count, std::vector<std::size_t>(want.size(), npos));
  for (std::size_t k = 0; k < key_count; ++k) {
    const auto kb = static_cast<std::uint8_t>(k);
    h.send_counts[k].assign(P, 0), h.send_displs[k].assign(P, 0);
    h.recv_counts[k].assign(P, 0), h.recv_displs[k].assign(P, 0);
    h.send_at[k] = h.send_bytes;
    std::size_t at = 0;
    for (std::size_t p = 0; p < P; ++p) {
      h.send_displs[k][p] = at;
      if (static_cast<int>(p) == me) continue;
      for (sample_id id : l.wanted[p]) {
        if (l.owner[id] != me) continue;
        const auto range = local.sample_bytes(keys[k].name, *local.find(id));
        h.pack.add(kb, range.offset, 0, h.send_at[k] + at, range.size);
        at += range.size;
      }
      h.send_counts[k][p] = at - h.send_displs[k][p];
    }
    h.send_bytes = round_up(h.send_bytes + at);
    h.recv_at[k] = h.recv_bytes;
    at = 0;
    for (std::size_t p = 0; p < P; ++p) {
      h.recv_displs[k][p] = at;
      if (static_cast<int>(p) == me) continue;
      for (std::size_t i = 0; i < want.size(); ++i)
        if (l.owner[want[i]] == static_cast<int>(p)) {
          h.recv_of[k][i] = h.recv_at[k] + at;
          at += key_bytes(c, want[i], k);
        }
      h.recv_counts[k][p] = at - h.recv_displs[k][p];
    }
    h.recv_bytes = round_up(h.recv_bytes + at);
    for (std::size_t i = 0; i < want.size(); ++i) {
      const std::size_t bytes = key_bytes(c, want[i], k);
      if (h.recv_of[k][i] != npos)
        h.unpack.add(key_count, h.recv_of[k][i], kb, h.out_bytes[k], bytes);
      else
        h.unpack.add(kb, local.sample_bytes(keys[k].name, *local.find(want[i])).offset, kb, h.out_bytes[k],
                     bytes);
      h.out_bytes[k] += bytes;
    }
  }
  for (std::size_t k = 0; k < key_count; ++k) {
    const std::vector<std::size_t>* from[] = {&h.send_counts[k], &h.send_displs[k], &h.recv_counts[k],
                                              &h.recv_displs[k]};
    for (std::size_t v = 0; v < 4; ++v)
      for (std::size_t n : *from[v]) h.mpi_counts[k][v].push_back(as_count(n));
  }
  h.pack.upload(s);
  h.unpack.upload(s);
  return h;
}

// Device buffers of one hand-written run: kept between calls, or allocated (stream-ordered) per call.
struct hand_buffers {
  cuda_tensor send, recv;
  std::array<cuda_tensor, key_count> out;
  bool ready = false;

  // Member by member: GCC 12 under nvcc fails (internal error) on this struct's implicit move assignment.
  void clear() {
    send = cuda_tensor();
    recv = cuda_tensor();
    for (auto& o : out) o = cuda_tensor();
    ready = false;
  }
};

struct pinned {
  std::byte* p = nullptr;
  explicit pinned(std::size_t n) {
    d::cuda_check(cudaMallocHost(&p, std::max<std::size_t>(n, 1)), "cudaMallocHost");
  }
  pinned(const pinned&) = delete;
  pinned& operator=(const pinned&) = delete;
  ~pinned() { cudaFreeHost(p); }
};

void nccl_check(ncclResult_t rc, ncclComm_t comm, const char* what) {
  // The communicator is nonblocking (nccl_communicator::create makes it so): a call may return ncclInProgress
  // and is then polled until NCCL has taken it.
  while (rc == ncclInProgress) {
    ncclResult_t state = ncclSuccess;
    rc = ncclCommGetAsyncError(comm, &state);
    if (rc == ncclSuccess) rc = state;
  }
  if (rc != ncclSuccess) d::fail(what, ": ", ncclGetErrorString(rc));
}

// The exchange as a user writes it on each transport, on the stream; the caller synchronizes.
struct hand_exchange {
  ncclComm_t nccl = nullptr;  // else host-staged MPI over `mpi`
  MPI_Comm mpi = MPI_COMM_NULL;
  int me = 0, ranks = 1;
  std::unique_ptr<pinned> send_host, recv_host;  // sized per layout, kept like the communicator's staging

  void run(const hand_plan& h, const std::byte* send, std::byte* recv, cudaStream_t s) const {
    if (ranks == 1) return;
    if (nccl != nullptr) {
      nccl_check(ncclGroupStart(), nccl, "ncclGroupStart");
      for (std::size_t k = 0; k < key_count; ++k)
        for (int p = 0; p < ranks; ++p) {
          const auto u = static_cast<std::size_t>(p);
          if (const std::size_t n = h.send_counts[k][u]; n != 0)
            nccl_check(ncclSend(send + h.send_at[k] + h.send_displs[k][u], n, ncclUint8, p, nccl, s), nccl,
                       "ncclSend");
          if (const std::size_t n = h.recv_counts[k][u]; n != 0)
            nccl_check(ncclRecv(recv + h.recv_at[k] + h.recv_displs[k][u], n, ncclUint8, p, nccl, s), nccl,
                       "ncclRecv");
        }
      nccl_check(ncclGroupEnd(), nccl, "ncclGroupEnd");
      return;
    }
    d::cuda_check(cudaMemcpyAsync(send_host->p, send, h.send_bytes, cudaMemcpyDeviceToHost, s), "D2H");
    d::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    std::array<MPI_Request, key_count> reqs{};
    for (std::size_t k = 0; k < key_count; ++k) {
      const auto& n = h.mpi_counts[k];
      MPI_Ialltoallv(send_host->p + h.send_at[k], n[0].data(), n[1].data(), MPI_BYTE,
                     recv_host->p + h.recv_at[k], n[2].data(), n[3].data(), MPI_BYTE, mpi, &reqs[k]);
    }
    MPI_Waitall(static_cast<int>(key_count), reqs.data(), MPI_STATUSES_IGNORE);
    d::cuda_check(cudaMemcpyAsync(recv, recv_host->p, h.recv_bytes, cudaMemcpyHostToDevice, s), "H2D");
  }
};

cuda_tensor bytes_on(std::size_t n, cudaStream_t s) {
  return cuda_tensor(dtype::u8, {static_cast<std::int64_t>(n)}, {s, nullptr});
}

// Pack, exchange and (with `unpack`) unpack into per-key outputs; synchronized on return. Without `reuse`
// the device buffers are allocated for the call and freed after it, stream-ordered.
void hand_run(const hand_plan& h, const hand_exchange& x, const device_batch& local, hand_buffers& b,
              bool reuse, bool unpack, cudaStream_t s) {
  if (!reuse || !b.ready) {
    b.send = bytes_on(h.send_bytes, s);
    b.recv = bytes_on(h.recv_bytes, s);
    for (std::size_t k = 0; k < key_count; ++k) b.out[k] = bytes_on(h.out_bytes[k], s);
    b.ready = true;
  }
  buffers io{};
  for (std::size_t k = 0; k < key_count; ++k)
    io.src[k] = static_cast<const std::byte*>(local.data(keys[k].name).data());
  io.dst[0] = static_cast<std::byte*>(b.send.data());
  h.pack.run(io, s);
  x.run(h, static_cast<const std::byte*>(b.send.data()), static_cast<std::byte*>(b.recv.data()), s);
  if (unpack) {
    io.src[key_count] = static_cast<const std::byte*>(b.recv.data());
    for (std::size_t k = 0; k < key_count; ++k) io.dst[k] = static_cast<std::byte*>(b.out[k].data());
    h.unpack.run(io, s);
  }
  if (!reuse) b.clear();
  d::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

// ---- checking ---------------------------------------------------------------------------------------------

// After the work queued on the stream (a result's copies may still be in flight there): the stream is
// non-blocking, so a plain cudaMemcpy would not wait for it.
std::vector<std::byte> download(const void* p, std::size_t n, cudaStream_t s) {
  std::vector<std::byte> out(n);
  if (n != 0) d::cuda_check(cudaMemcpyAsync(out.data(), p, n, cudaMemcpyDeviceToHost, s), "download");
  d::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  return out;
}

// Samples of `want` whose bytes are not at their place: key k's sample i at at(k, i) of got[k].
template <class At>
std::size_t wrong_samples(const config& c, const std::vector<sample_id>& want,
                          const std::array<std::vector<std::byte>, key_count>& got, At at) {
  std::size_t wrong = 0;
  std::vector<std::byte> expect;
  for (std::size_t i = 0; i < want.size(); ++i) {
    bool ok = true;
    for (std::size_t k = 0; k < key_count && ok; ++k) {
      const std::size_t where = at(k, i);
      expect.resize(key_bytes(c, want[i], k));
      expected_bytes(c, want[i], k, expect.data());
      ok = where != npos && where + expect.size() <= got[k].size() &&
           std::memcmp(got[k].data() + where, expect.data(), expect.size()) == 0;
    }
    wrong += ok ? 0 : 1;
  }
  return wrong;
}

// redistribute()'s result: the ids in the consumer's order, one sequence per sample, every byte.
std::size_t wrong_in_batch(const config& c, const device_batch& b, const std::vector<sample_id>& want,
                           cudaStream_t s) {
  if (b.size() != want.size() || b.fields().size() != key_count) return std::max(b.size(), want.size());
  std::array<std::vector<std::byte>, key_count> got;
  for (std::size_t k = 0; k < key_count; ++k) {
    if (!b.has_key(keys[k].name) || b.at(keys[k].name).dtype != keys[k].type) return want.size();
    got[k] = download(b.data(keys[k].name).data(), b.data(keys[k].name).nbytes(), s);
  }
  return wrong_samples(c, want, got, [&](std::size_t k, std::size_t i) {
    const auto lens = b.seqlens(keys[k].name, i);
    const bool same = b.ids()[i] == want[i] && lens.size() == 1 && lens[0] == tokens_of(c, want[i]);
    return same ? b.sample_bytes(keys[k].name, i).offset : npos;
  });
}

// The hand-written outputs (per key, packed in the consumer's order) or, without them, its receive buffer.
std::size_t wrong_in_hand(const config& c, const hand_plan& h, const hand_buffers& b,
                          const std::vector<sample_id>& want, bool unpacked, cudaStream_t s) {
  std::array<std::vector<std::byte>, key_count> got;
  std::array<std::vector<std::size_t>, key_count> at;
  for (std::size_t k = 0; k < key_count; ++k) {
    got[k] =
        unpacked ? download(b.out[k].data(), h.out_bytes[k], s) : download(b.recv.data(), h.recv_bytes, s);
    for (std::size_t i = 0, o = 0; i < want.size(); o += key_bytes(c, want[i], k), ++i)
      at[k].push_back(unpacked ? o : h.recv_of[k][i]);
  }
  std::vector<sample_id> remote;  // without unpacking, only what crossed ranks is there to check
  std::array<std::vector<std::size_t>, key_count> remote_at;
  for (std::size_t i = 0; i < want.size(); ++i)
    if (unpacked || at[0][i] != npos) {
      remote.push_back(want[i]);
      for (std::size_t k = 0; k < key_count; ++k) remote_at[k].push_back(at[k][i]);
    }
  return wrong_samples(c, remote, got, [&](std::size_t k, std::size_t i) { return remote_at[k][i]; });
}

// ---- the run ----------------------------------------------------------------------------------------------

constexpr const char* method_names[] = {"redistribute", "redistribute_into", "hand-unpacked",
                                        "hand-unpacked-alloc", "hand-exchange"};
constexpr std::size_t method_count = std::size(method_names);
// The redistribute row each hand row's ratio compares with: that row's time / the hand row's.
constexpr std::size_t compared_with[] = {0, 0, 1, 0, 0};

struct world {
  MPI_Comm comm;
  int me, ranks, local_ranks, devices, device;
  cudaStream_t stream;
};

// Every layout over `comm` (nccl_communicator or mpi_device_communicator); false when a check failed.
template <class Comm>
bool run_layouts(const config& c, const world& w, const redist::mpi_communicator& host, const Comm& comm,
                 hand_exchange& x, double target) {
  const redist::cuda_space space(w.stream);
  const redist::redistribute_options opts{.max_staging_bytes = c.budget};
  bool failed = false;
  struct summary {
    std::string layout;
    double into, alloc;
    long long wrong;
  };
  std::vector<summary> sums;
  say(w.me, "# %-10s %-8s %-19s %12s %12s %10s %11s %11s %6s %8s\n", "layout", "order", "method", "size(B)",
      "wire(B)", "time(ms)", "algbw(GB/s)", "busbw(GB/s)", "#wrong", "ratio");
  std::vector<std::string> notes;
  for (const std::string kind : {"blocks", "reordered", "skewed"}) {
    const layout l = make_layout(kind, w.ranks, c);
    const auto& wanted = l.wanted[static_cast<std::size_t>(w.me)];
    const device_batch local = produce(l, w.me, c, w.stream);
    const hand_plan hand = make_hand_plan(l, local, w.me, c, w.stream);
    if (x.nccl == nullptr && w.ranks > 1) {
      x.send_host = std::make_unique<pinned>(hand.send_bytes);
      x.recv_host = std::make_unique<pinned>(hand.recv_bytes);
    }

    // The traffic of the plan redistribute() makes (its one-call form's planner on every rank's metadata)
    // against the hand-written exchange's: the same bytes between every pair of ranks, or the ratio lies.
    const auto meta = redist::gather_metadata(host, local);
    std::vector<std::string> key_names;
    for (const auto& k : keys) key_names.emplace_back(k.name);
    const auto plan = redist::plan_all_to_all(meta.tracker, l.wanted, key_names);
    const redist::dense_traffic planned = redist::dense_traffic_of(plan, meta.tracker);
    std::vector<std::uint64_t> row(static_cast<std::size_t>(w.ranks), 0);
    for (std::size_t k = 0; k < key_count; ++k)
      for (std::size_t p = 0; p < row.size(); ++p) row[p] += hand.send_counts[k][p];
    redist::dense_traffic by_hand{w.ranks, std::vector<std::uint64_t>(row.size() * row.size())};
    MPI_Allgather(row.data(), w.ranks, MPI_UINT64_T, by_hand.bytes.data(), w.ranks, MPI_UINT64_T, w.comm);
    if (planned != by_hand) {
      failed = true;
      notes.push_back(kind + ": redistribute's plan and the hand-written exchange move different bytes");
    }
    std::uint64_t wire = 0, payload = 0;
    for (auto b : planned.bytes) wire += b;
    for (const auto& want : l.wanted)
      for (sample_id id : want)
        for (std::size_t k = 0; k < key_count; ++k) payload += key_bytes(c, id, k);

    device_batch into_out;
    redist::workspace staging;
    redist::plan_cache plans;
    redist::redistribute_options into_opts = opts;
    into_opts.staging = &staging;
    into_opts.plans = &plans;
    hand_buffers kept, fresh;
    auto once = [&] { return redist::redistribute(comm, local, wanted, opts, space); };
    auto into = [&] { redist::redistribute_into(comm, local, wanted, into_out, into_opts, space); };
    auto sync = [&] { d::cuda_check(cudaStreamSynchronize(w.stream), "cudaStreamSynchronize"); };
    const std::array<std::function<void()>, method_count> run = {
        [&] {
          const auto out = once();
          sync();  // its tensors are freed on the stream after the work that fills them
        },
        [&] {
          into();
          sync();
        },
        [&] { hand_run(hand, x, local, kept, true, true, w.stream); },
        [&] { hand_run(hand, x, local, fresh, false, true, w.stream); },
        [&] { hand_run(hand, x, local, kept, true, false, w.stream); }};

    std::array<long long, method_count> wrong;
    wrong.fill(-1);
    if (c.check) {
      std::array<long long, method_count> mine{};
      mine[0] = static_cast<long long>(wrong_in_batch(c, once(), wanted, w.stream));
      into();
      mine[1] = static_cast<long long>(wrong_in_batch(c, into_out, wanted, w.stream));
      hand_run(hand, x, local, kept, true, true, w.stream);
      mine[2] = static_cast<long long>(wrong_in_hand(c, hand, kept, wanted, true, w.stream));
      hand_buffers checked;  // the alloc variant's buffers, kept once to be read back
      hand_run(hand, x, local, checked, true, true, w.stream);
      mine[3] = static_cast<long long>(wrong_in_hand(c, hand, checked, wanted, true, w.stream));
      kept.clear();
      hand_run(hand, x, local, kept, true, false, w.stream);
      mine[4] = static_cast<long long>(wrong_in_hand(c, hand, kept, wanted, false, w.stream));
      MPI_Allreduce(mine.data(), wrong.data(), static_cast<int>(method_count), MPI_LONG_LONG, MPI_SUM,
                    w.comm);
      for (auto n : wrong) failed = failed || n != 0;
    }

    const auto times = redist::bench::time_medians<method_count>(c.warmup, c.iters, w.comm, run,
                                                                 redist::bench::method_order::fixed);
    const double size = static_cast<double>(payload) / w.ranks;
    const double factor = w.ranks > 1 ? static_cast<double>(w.ranks - 1) / w.ranks : 0;
    long long wrong_all = 0;
    for (std::size_t m = 0; m < method_count; ++m) {
      char ratio[16] = "";
      if (m >= 2 && times[m] > 0)
        std::snprintf(ratio, sizeof ratio, "%.2f", times[compared_with[m]] / times[m]);
      char wrong_text[24] = "-";
      if (wrong[m] >= 0) std::snprintf(wrong_text, sizeof wrong_text, "%lld", wrong[m]);
      wrong_all += std::max(0ll, wrong[m]);
      const double algbw = times[m] > 0 ? size / times[m] / 1e9 : 0;
      say(w.me, "  %-10s %-8s %-19s %12.0f %12llu %10.3f %11.3f %11.3f %6s %8s\n", kind.c_str(),
          l.order.c_str(), method_names[m], size, static_cast<unsigned long long>(wire), times[m] * 1e3,
          algbw, algbw * factor, wrong_text, ratio);
    }
    sums.push_back({kind, times[1] / times[2], times[0] / times[3], c.check ? wrong_all : -1});

    // The pattern, for nccl-tests: alltoallv_perf -b B -e B with B the busiest rank's bytes, which it needs.
    const std::uint64_t busiest = (planned.busiest() + 15) / 16 * 16;
    if (w.ranks <= 8) {
      say(w.me, "#   traffic matrix of %s (bytes, row = source rank, column = destination):\n", kind.c_str());
      const std::string text = redist::nccl_tests_matrix(planned);
      for (std::size_t at = 0, nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1)
        say(w.me, "#     %s\n", text.substr(at, nl - at).c_str());
    }
    if (!c.matrix.empty() && w.me == 0) {
      const std::string file = c.matrix + kind + ".txt";
      std::ofstream(file) << redist::nccl_tests_matrix(planned);
      say(w.me,
          "#   wrote %s: NCCL_TESTS_ALLTOALLV_MATRIX_FILE=%s mpirun -np %d alltoallv_perf -b %llu -e %llu -a "
          "3\n",
          file.c_str(), file.c_str(), w.ranks, static_cast<unsigned long long>(busiest),
          static_cast<unsigned long long>(busiest));
    }
  }

  say(w.me,
      "#\n# targets (ratios from this run): redistribute_into / hand-unpacked and redistribute / "
      "hand-unpacked-alloc <= %.2f\n",
      target);
  for (const auto& s : sums) {
    const bool met = s.into <= target && s.alloc <= target;
    say(w.me, "# summary: comm %s ranks %d layout %-9s into %5.2f alloc %5.2f target %.2f %s wrong %lld\n",
        x.nccl != nullptr ? "nccl" : "mpi-staged", w.ranks, s.layout.c_str(), s.into, s.alloc, target,
        met ? "met" : "MISSED", s.wrong);
  }
  for (const auto& n : notes) say(w.me, "# ERROR: %s\n", n.c_str());
  if (c.check) say(w.me, "# check: %s\n", failed ? "WRONG BYTES" : "every byte of every method verified");
  return !failed;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  world w{};
  MPI_Comm_dup(MPI_COMM_WORLD, &w.comm);
  MPI_Comm_rank(w.comm, &w.me);
  MPI_Comm_size(w.comm, &w.ranks);
  config c = parse(argc, argv);
  const redist::bench::node_load node = redist::bench::node_load_of(w.comm, w.me);
  w.local_ranks = node.ranks;
  int local = 0;
  {
    MPI_Comm node_comm = MPI_COMM_NULL;
    MPI_Comm_split_type(w.comm, MPI_COMM_TYPE_SHARED, w.me, MPI_INFO_NULL, &node_comm);
    MPI_Comm_rank(node_comm, &local);
    MPI_Comm_free(&node_comm);
  }
  if (cudaGetDeviceCount(&w.devices) != cudaSuccess) w.devices = 0;
  int fewest = w.devices;
  MPI_Allreduce(MPI_IN_PLACE, &fewest, 1, MPI_INT, MPI_MIN, w.comm);
  if (fewest == 0) {
    say(w.me, "skipped: no CUDA device on %s rank\n", w.devices == 0 ? "this" : "some");
    MPI_Comm_free(&w.comm);
    MPI_Finalize();
    return 77;
  }
  // One GPU per rank of a node where there are enough (NCCL's condition), else ranks share them.
  bool own_gpu = w.local_ranks <= w.devices;
  MPI_Allreduce(MPI_IN_PLACE, &own_gpu, 1, MPI_CXX_BOOL, MPI_LAND, w.comm);
  if (c.comm == "auto") c.comm = own_gpu ? "nccl" : "mpi";
  if (c.comm == "nccl" && !own_gpu) {
    say(w.me,
        "bench_redistribute_device: --comm nccl needs a GPU per rank (%d ranks on a node of %d GPUs: NCCL "
        "refuses two ranks on one GPU); use --comm mpi\n",
        w.local_ranks, w.devices);
    MPI_Comm_free(&w.comm);
    MPI_Finalize();
    return 2;
  }
  w.device = local % w.devices;
  bool ok = false;
  try {
    d::cuda_check(cudaSetDevice(w.device), "cudaSetDevice");
    d::cuda_check(cudaStreamCreateWithFlags(&w.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    cudaDeviceProp prop{};
    d::cuda_check(cudaGetDeviceProperties(&prop, w.device), "cudaGetDeviceProperties");
    const redist::mpi_communicator host(w.comm);
    const bool nccl = c.comm == "nccl";
    say(w.me,
        "# bench_redistribute_device: %d ranks, %d on this node of %u cores and %d GPUs (%s), rank on GPU "
        "(node rank mod GPUs)%s\n",
        w.ranks, w.local_ranks, node.cores, w.devices, prop.name,
        node.oversubscribed() ? " -- OVERSUBSCRIBED: ranks share cores, timings are CPU-bound and noisy"
                              : "");
    say(w.me, "# comm: %s\n",
        nccl ? "nccl_communicator (grouped ncclSend/ncclRecv), one GPU per rank"
             : "mpi_device_communicator, host-staged (cuda_aware = never) through pinned "
               "memory, ranks sharing GPUs");
    say(w.me,
        "# workload: %zu samples per rank on average, lognormal tokens (mean %g, sigma %g); keys hidden "
        "bf16[16], logits bf16, tokens i64 (42 bytes per token)%s\n",
        c.samples, c.mean_tokens, c.sigma, c.quick ? "; QUICK configuration" : "");
    say(w.me,
        "# time: median of %d iterations after %d warm-up, each the max over ranks after a barrier, every "
        "method ending with its stream synchronized\n",
        c.iters, c.warmup);
    say(w.me,
        "# size: payload per rank (all wanted bytes / ranks, own samples included); algbw = size / time; "
        "busbw = algbw * (n-1)/n; wire: bytes crossing ranks, all ranks (the plan's, the hand code's)\n");
    say(w.me,
        "# methods: redistribute = one-call form on device tensors, a new result each call; "
        "redistribute_into = into the last result, kept workspace and plan cache; hand-unpacked = one pack "
        "kernel, %s, one unpack kernel into per-key buffers in the consumer's order (its own samples from "
        "its batch), buffers kept (baseline of redistribute_into); hand-unpacked-alloc = the same with its "
        "device buffers allocated per call, cudaMallocAsync (baseline of redistribute); hand-exchange = "
        "pack + exchange, no unpacking\n",
        nccl
            ? "one group of ncclSend/ncclRecv per key and peer"
            : "one D2H copy to pinned memory, one MPI_Ialltoallv per key, one H2D copy (pinned memory kept)");
    say(w.me,
        "# ratio: on the hand rows the redistribute row it is the baseline of / that row; staging budget "
        "%zu bytes%s\n#\n",
        c.budget,
        nccl ? "" : ("; pinned staging " + std::to_string(c.staging) + " bytes per direction").c_str());
    hand_exchange x;
    x.mpi = w.comm;
    x.me = w.me;
    x.ranks = w.ranks;
    if (nccl) {
      const auto comm = redist::nccl_communicator::create(host, w.device, w.stream);
      x.nccl = comm.native();
      ok = run_layouts(c, w, host, comm, x, 1.10);
    } else {
      const redist::mpi_device_communicator comm(
          host, w.stream, {.staging_bytes = c.staging, .cuda_aware = redist::mpi_cuda_aware::never});
      ok = run_layouts(c, w, host, comm, x, 1.25);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_redistribute_device: rank %d: %s\n", w.me, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int all = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_LAND, w.comm);
  cudaStreamDestroy(w.stream);
  MPI_Comm_free(&w.comm);
  MPI_Finalize();
  return all ? 0 : 1;
}
