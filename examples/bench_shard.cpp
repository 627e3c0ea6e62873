// Benchmark of redist::shard_scatter (tensor-parallel weight loading) against what a user writes by hand: one
// MPI_Scatter per sharded tensor (the owner packing the shards of a tensor cut along dim 1 contiguously
// first, into a scratch buffer it reuses; a dim-0 cut is in order already) and one MPI_Bcast per replicated
// tensor, with the same owners. A fake model of 1,000 tensors of mixed sizes and dtypes (bf16, i8, f16, f32,
// f64; dims 0 and 1 cut, norms and biases replicated), each owner holding its full tensors, which load hands
// out as views; or (--large) a model of a few large tensors (654 MB: an embedding and an up projection cut
// along dim 0, a down projection along dim 1, a replicated position table and a norm), where the copies
// decide. shard_scatter runs twice: staging in a workspace allocated once (as the hand-written loop
// reuses its scratch) and allocating its staging in each call (fresh memory: page faults). The three run in
// the same program, in rotating order; the program prints median times (max over ranks), the ratios and the
// MPI calls each made per rank, counted through the PMPI profiling interface: every MPI function redist's
// MPI backend calls is wrapped below, and a call counts when it starts between the two timestamps of a run.
// Communication calls (collectives, point to point, waits) are also counted apart from local ones (derived
// datatypes, addresses, queries): receiving in place costs shard_scatter three local calls per source and
// batch (create, commit and free a datatype).
//
//   mpirun -np 8 ./example_bench_shard --check          the full benchmark (316 MB), every result verified
//   mpirun -np 8 ./example_bench_shard                  no arguments: --quick --check, what CTest runs
//   mpirun -np 2 ./example_bench_shard --large --check  the few large tensors
// More: --layers N (100, 10 tensors each), --hidden N (384; --large 4096), --ffn N (1024; --large 14336),
// --vocab N (--large: 32768), --iters N (10), --warmup N (2), --budget BYTES (shard_options'
// max_batch_bytes). --quick: hidden 48 and ffn 96 unless given (4.3 MB; --large: 512, 1792, vocab 4096), 1
// warm-up + 3 timed iterations. Targets: the model of many small tensors at least 2x as fast as the
// per-tensor code with 100x fewer MPI calls, the large model at least as fast (1x). Exits non-zero when a
// byte is wrong or on an error; targets missed are reported, not failed.
#include <mpi.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/shard.hpp"

// ---- counting MPI calls: each wrapper counts, then forwards to PMPI --------------------------------------

namespace {

// Communication first (what moves data, completes it or makes communicators), then local calls (datatypes,
// addresses, queries), which cost no message.
enum call : std::size_t {
  c_scatter,
  c_scatterv,
  c_bcast,
  c_ibcast,
  c_gatherv,
  c_allgather,
  c_allgatherv,
  c_alltoall,
  c_alltoallv,
  c_alltoallw,
  c_ialltoallv,
  c_ialltoallw,
  c_allreduce,
  c_barrier,
  c_send,
  c_recv,
  c_isend,
  c_irecv,
  c_wait,
  c_waitall,
  c_test,
  c_comm_dup,
  c_comm_create_group,
  c_comm_free,
  c_first_local,
  c_request_free = c_first_local,
  c_get_count,
  c_type_create_hindexed,
  c_type_commit,
  c_type_free,
  c_finalized,
  c_initialized,
  c_error_string,
  c_comm_group,
  c_group_incl,
  c_group_free,
  c_comm_set_errhandler,
  c_comm_rank,
  c_comm_size,
  c_calls
};
constexpr std::array<const char*, c_calls> call_names = {"MPI_Scatter",
                                                         "MPI_Scatterv",
                                                         "MPI_Bcast",
                                                         "MPI_Ibcast",
                                                         "MPI_Gatherv",
                                                         "MPI_Allgather",
                                                         "MPI_Allgatherv",
                                                         "MPI_Alltoall",
                                                         "MPI_Alltoallv",
                                                         "MPI_Alltoallw",
                                                         "MPI_Ialltoallv",
                                                         "MPI_Ialltoallw",
                                                         "MPI_Allreduce",
                                                         "MPI_Barrier",
                                                         "MPI_Send",
                                                         "MPI_Recv",
                                                         "MPI_Isend",
                                                         "MPI_Irecv",
                                                         "MPI_Wait",
                                                         "MPI_Waitall",
                                                         "MPI_Test",
                                                         "MPI_Comm_dup",
                                                         "MPI_Comm_create_group",
                                                         "MPI_Comm_free",
                                                         "MPI_Request_free",
                                                         "MPI_Get_count",
                                                         "MPI_Type_create_hindexed",
                                                         "MPI_Type_commit",
                                                         "MPI_Type_free",
                                                         "MPI_Finalized",
                                                         "MPI_Initialized",
                                                         "MPI_Error_string",
                                                         "MPI_Comm_group",
                                                         "MPI_Group_incl",
                                                         "MPI_Group_free",
                                                         "MPI_Comm_set_errhandler",
                                                         "MPI_Comm_rank",
                                                         "MPI_Comm_size"};

using call_counts = std::array<std::uint64_t, c_calls>;
call_counts counted{};
bool counting = false;

void note(call c) {
  if (counting) ++counted[c];
}

}  // namespace

extern "C" {
int MPI_Scatter(const void* sb, int sc, MPI_Datatype st, void* rb, int rc, MPI_Datatype rt, int root,
                MPI_Comm c) {
  note(c_scatter);
  return PMPI_Scatter(sb, sc, st, rb, rc, rt, root, c);
}
int MPI_Scatterv(const void* sb, const int sc[], const int sd[], MPI_Datatype st, void* rb, int rc,
                 MPI_Datatype rt, int root, MPI_Comm c) {
  note(c_scatterv);
  return PMPI_Scatterv(sb, sc, sd, st, rb, rc, rt, root, c);
}
int MPI_Bcast(void* b, int n, MPI_Datatype t, int root, MPI_Comm c) {
  note(c_bcast);
  return PMPI_Bcast(b, n, t, root, c);
}
int MPI_Ibcast(void* b, int n, MPI_Datatype t, int root, MPI_Comm c, MPI_Request* r) {
  note(c_ibcast);
  return PMPI_Ibcast(b, n, t, root, c, r);
}
int MPI_Gatherv(const void* sb, int sc, MPI_Datatype st, void* rb, const int rc[], const int rd[],
                MPI_Datatype rt, int root, MPI_Comm c) {
  note(c_gatherv);
  return PMPI_Gatherv(sb, sc, st, rb, rc, rd, rt, root, c);
}
int MPI_Allgather(const void* sb, int sc, MPI_Datatype st, void* rb, int rc, MPI_Datatype rt, MPI_Comm c) {
  note(c_allgather);
  return PMPI_Allgather(sb, sc, st, rb, rc, rt, c);
}
int MPI_Allgatherv(const void* sb, int sc, MPI_Datatype st, void* rb, const int rc[], const int rd[],
                   MPI_Datatype rt, MPI_Comm c) {
  note(c_allgatherv);
  return PMPI_Allgatherv(sb, sc, st, rb, rc, rd, rt, c);
}
int MPI_Alltoall(const void* sb, int sc, MPI_Datatype st, void* rb, int rc, MPI_Datatype rt, MPI_Comm c) {
  note(c_alltoall);
  return PMPI_Alltoall(sb, sc, st, rb, rc, rt, c);
}
int MPI_Alltoallv(const void* sb, const int sc[], const int sd[], MPI_Datatype st, void* rb, const int rc[],
                  const int rd[], MPI_Datatype rt, MPI_Comm c) {
  note(c_alltoallv);
  return PMPI_Alltoallv(sb, sc, sd, st, rb, rc, rd, rt, c);
}
int MPI_Alltoallw(const void* sb, const int sc[], const int sd[], const MPI_Datatype st[], void* rb,
                  const int rc[], const int rd[], const MPI_Datatype rt[], MPI_Comm c) {
  note(c_alltoallw);
  return PMPI_Alltoallw(sb, sc, sd, st, rb, rc, rd, rt, c);
}
int MPI_Ialltoallv(const void* sb, const int sc[], const int sd[], MPI_Datatype st, void* rb, const int rc[],
                   const int rd[], MPI_Datatype rt, MPI_Comm c, MPI_Request* r) {
  note(c_ialltoallv);
  return PMPI_Ialltoallv(sb, sc, sd, st, rb, rc, rd, rt, c, r);
}
int MPI_Ialltoallw(const void* sb, const int sc[], const int sd[], const MPI_Datatype st[], void* rb,
                   const int rc[], const int rd[], const MPI_Datatype rt[], MPI_Comm c, MPI_Request* r) {
  note(c_ialltoallw);
  return PMPI_Ialltoallw(sb, sc, sd, st, rb, rc, rd, rt, c, r);
}
int MPI_Allreduce(const void* sb, void* rb, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c) {
  note(c_allreduce);
  return PMPI_Allreduce(sb, rb, n, t, op, c);
}
int MPI_Barrier(MPI_Comm c) {
  note(c_barrier);
  return PMPI_Barrier(c);
}
int MPI_Send(const void* b, int n, MPI_Datatype t, int dst, int tag, MPI_Comm c) {
  note(c_send);
  return PMPI_Send(b, n, t, dst, tag, c);
}
int MPI_Recv(void* b, int n, MPI_Datatype t, int src, int tag, MPI_Comm c, MPI_Status* s) {
  note(c_recv);
  return PMPI_Recv(b, n, t, src, tag, c, s);
}
int MPI_Isend(const void* b, int n, MPI_Datatype t, int dst, int tag, MPI_Comm c, MPI_Request* r) {
  note(c_isend);
  return PMPI_Isend(b, n, t, dst, tag, c, r);
}
int MPI_Irecv(void* b, int n, MPI_Datatype t, int src, int tag, MPI_Comm c, MPI_Request* r) {
  note(c_irecv);
  return PMPI_Irecv(b, n, t, src, tag, c, r);
}
int MPI_Wait(MPI_Request* r, MPI_Status* s) {
  note(c_wait);
  return PMPI_Wait(r, s);
}
int MPI_Waitall(int n, MPI_Request r[], MPI_Status s[]) {
  note(c_waitall);
  return PMPI_Waitall(n, r, s);
}
int MPI_Test(MPI_Request* r, int* flag, MPI_Status* s) {
  note(c_test);
  return PMPI_Test(r, flag, s);
}
int MPI_Request_free(MPI_Request* r) {
  note(c_request_free);
  return PMPI_Request_free(r);
}
int MPI_Get_count(const MPI_Status* s, MPI_Datatype t, int* n) {
  note(c_get_count);
  return PMPI_Get_count(s, t, n);
}
int MPI_Type_create_hindexed(int n, const int lengths[], const MPI_Aint displs[], MPI_Datatype old,
                             MPI_Datatype* t) {
  note(c_type_create_hindexed);
  return PMPI_Type_create_hindexed(n, lengths, displs, old, t);
}
int MPI_Type_commit(MPI_Datatype* t) {
  note(c_type_commit);
  return PMPI_Type_commit(t);
}
int MPI_Type_free(MPI_Datatype* t) {
  note(c_type_free);
  return PMPI_Type_free(t);
}
int MPI_Finalized(int* flag) {
  note(c_finalized);
  return PMPI_Finalized(flag);
}
int MPI_Initialized(int* flag) {
  note(c_initialized);
  return PMPI_Initialized(flag);
}
int MPI_Error_string(int code, char* text, int* length) {
  note(c_error_string);
  return PMPI_Error_string(code, text, length);
}
int MPI_Comm_group(MPI_Comm c, MPI_Group* g) {
  note(c_comm_group);
  return PMPI_Comm_group(c, g);
}
int MPI_Group_incl(MPI_Group g, int n, const int ranks[], MPI_Group* out) {
  note(c_group_incl);
  return PMPI_Group_incl(g, n, ranks, out);
}
int MPI_Group_free(MPI_Group* g) {
  note(c_group_free);
  return PMPI_Group_free(g);
}
int MPI_Comm_create_group(MPI_Comm c, MPI_Group g, int tag, MPI_Comm* out) {
  note(c_comm_create_group);
  return PMPI_Comm_create_group(c, g, tag, out);
}
int MPI_Comm_set_errhandler(MPI_Comm c, MPI_Errhandler h) {
  note(c_comm_set_errhandler);
  return PMPI_Comm_set_errhandler(c, h);
}
int MPI_Comm_rank(MPI_Comm c, int* r) {
  note(c_comm_rank);
  return PMPI_Comm_rank(c, r);
}
int MPI_Comm_size(MPI_Comm c, int* n) {
  note(c_comm_size);
  return PMPI_Comm_size(c, n);
}
int MPI_Comm_dup(MPI_Comm c, MPI_Comm* out) {
  note(c_comm_dup);
  return PMPI_Comm_dup(c, out);
}
int MPI_Comm_free(MPI_Comm* c) {
  note(c_comm_free);
  return PMPI_Comm_free(c);
}
}  // extern "C"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::shard_spec;

// ---- configuration ----------------------------------------------------------------------------------------

struct config {
  int layers = 100;
  std::int64_t hidden = 384;
  std::int64_t ffn = 1024;
  std::int64_t vocab = 32768;
  int warmup = 2;
  int iters = 10;
  std::size_t budget = redist::shard_options{}.max_batch_bytes;
  bool check = false;
  bool quick = false;
  bool large = false;
};

config parse(int argc, char** argv) {
  redist::bench::command_line args(argc, argv, "bench_shard",
                                   "[--check] [--quick] [--large] [--layers N] [--hidden N] [--ffn N] "
                                   "[--vocab N] [--iters N] [--warmup N] [--budget BYTES]",
                                   "--quick --check");
  config c;
  if (args.empty()) c.quick = c.check = true;
  bool sized = false;
  while (args.next(c.check, c.quick)) {
    const std::string_view a = args.option();
    auto integer = [&](std::uint64_t low) { return args.integer_at_least(low); };
    if (a == "--layers") {
      c.layers = static_cast<int>(std::min<std::uint64_t>(integer(1), 100000));
    } else if (a == "--hidden") {
      c.hidden = static_cast<std::int64_t>(std::min<std::uint64_t>(integer(1), 1 << 20));
      sized = true;
    } else if (a == "--ffn") {
      c.ffn = static_cast<std::int64_t>(std::min<std::uint64_t>(integer(1), 1 << 20));
      sized = true;
    } else if (a == "--vocab") {
      c.vocab = static_cast<std::int64_t>(std::min<std::uint64_t>(integer(1), 1 << 24));
      sized = true;
    } else if (a == "--large") {
      c.large = true;
    } else if (a == "--iters") {
      c.iters = static_cast<int>(std::min<std::uint64_t>(integer(1), 100000));
    } else if (a == "--warmup") {
      c.warmup = static_cast<int>(std::min<std::uint64_t>(integer(0), 100000));
    } else if (a == "--budget") {
      c.budget = static_cast<std::size_t>(integer(0));
    } else {
      args.unknown();
    }
  }
  if (c.large && !sized) {
    c.hidden = c.quick ? 512 : 4096;
    c.ffn = c.quick ? 1792 : 14336;
    c.vocab = c.quick ? 4096 : 32768;
  }
  if (c.quick) {
    if (!sized && !c.large) {
      c.hidden = 48;
      c.ffn = 96;
    }
    c.warmup = 1;
    c.iters = 3;
  }
  return c;
}

// ---- the model
// ----------------------------------------------------------------------------------------------

// Ten tensors per layer, sizes rounded up to a multiple of the rank count so that every cut divides.
std::vector<shard_spec> model(const config& c, int ranks) {
  const auto up = [&](std::int64_t x) { return (x + ranks - 1) / ranks * ranks; };
  const std::int64_t h = up(c.hidden), f = up(c.ffn);
  const std::optional<int> replicated, dim0 = 0, dim1 = 1;
  std::vector<shard_spec> s;
  if (c.large) {
    const std::int64_t v = up(c.vocab), seq = up(c.hidden);
    s.push_back({"embed", dtype::bf16, {v, h}, dim0, {}});
    s.push_back({"positions", dtype::bf16, {seq, h}, replicated, {}});
    s.push_back({"mlp.up", dtype::bf16, {2 * f, h}, dim0, {}});
    s.push_back({"mlp.down", dtype::bf16, {h, f}, dim1, {}});
    s.push_back({"norm", dtype::f32, {h}, replicated, {}});
    return s;
  }
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    s.push_back({p + "input_norm", dtype::f32, {h}, replicated, {}});
    s.push_back({p + "qkv.weight", dtype::bf16, {3 * h, h}, dim0, {}});
    s.push_back({p + "qkv.bias", dtype::bf16, {3 * h}, dim0, {}});
    s.push_back({p + "out.weight", dtype::bf16, {h, h}, dim1, {}});
    s.push_back({p + "out.bias", dtype::f32, {h}, replicated, {}});
    s.push_back({p + "post_norm", dtype::f32, {h}, replicated, {}});
    s.push_back({p + "up.weight", l % 2 == 0 ? dtype::i8 : dtype::bf16, {2 * f, h}, dim0, {}});
    s.push_back({p + "up.scale", dtype::f16, {2 * f}, dim0, {}});
    s.push_back({p + "down.weight", dtype::bf16, {h, f}, dim1, {}});
    s.push_back({p + "down.bias", dtype::f64, {h}, replicated, {}});
  }
  return s;
}

std::size_t bytes_of(const shard_spec& s) {
  std::size_t b = redist::size_of(s.dtype);
  for (const std::int64_t e : s.shape) b *= static_cast<std::size_t>(e);
  return b;
}

std::byte pattern(std::size_t tensor, std::size_t byte) {
  const std::uint64_t x = (byte + 1) * 0x9E3779B97F4A7C15ull ^ (tensor + 1) * 0xC2B2AE3D27D4EB4Full;
  return static_cast<std::byte>(x >> 56);
}

host_tensor make_full(const shard_spec& s, std::size_t i) {
  host_tensor t = host_tensor::uninitialized(s.dtype, s.shape);
  std::span<std::byte> b = t.bytes();
  for (std::size_t j = 0; j < b.size(); ++j) b[j] = pattern(i, j);
  return t;
}

// #wrong elements of rank r's shard (or copy) of tensor i: each compared with the full tensor's element at
// the same coordinates, shifted along the shard dim by r's slice.
std::size_t wrong_elements(const shard_spec& s, std::size_t i, const host_tensor& got, int r, int ranks) {
  std::vector<std::int64_t> shape = s.shape;
  if (s.shard_dim) shape[static_cast<std::size_t>(*s.shard_dim)] /= ranks;
  std::size_t elements = 1;
  for (const std::int64_t e : shape) elements *= static_cast<std::size_t>(e);
  if (got.dtype() != s.dtype ||
      !std::equal(shape.begin(), shape.end(), got.shape().begin(), got.shape().end())) {
    return std::max<std::size_t>(elements, 1);
  }
  const std::size_t width = redist::size_of(s.dtype);
  const std::span<const std::byte> bytes = got.bytes();
  std::size_t wrong = 0;
  for (std::size_t e = 0; e < elements; ++e) {
    std::size_t rest = e, flat = 0, scale = 1;
    for (std::size_t d = shape.size(); d-- > 0;) {
      auto x = static_cast<std::int64_t>(rest % static_cast<std::size_t>(shape[d]));
      rest /= static_cast<std::size_t>(shape[d]);
      if (s.shard_dim && d == static_cast<std::size_t>(*s.shard_dim)) x += r * shape[d];
      flat += static_cast<std::size_t>(x) * scale;
      scale *= static_cast<std::size_t>(s.shape[d]);
    }
    for (std::size_t b = 0; b < width; ++b) {
      if (bytes[e * width + b] != pattern(i, flat * width + b)) {
        ++wrong;
        break;
      }
    }
  }
  return wrong;
}

// ---- the two sides
// ------------------------------------------------------------------------------------------

// By hand: per tensor in spec order, its owner packs the shards (a dim-1 cut; dim 0 is in order already) and
// scatters them, or broadcasts a replicated tensor. Results allocated as they arrive, as shard_scatter's are.
std::vector<host_tensor> by_hand(MPI_Comm comm, int me, int ranks, const std::vector<shard_spec>& specs,
                                 const std::vector<int>& owners,
                                 const std::vector<std::optional<host_tensor>>& full,
                                 std::vector<std::byte>& scratch) {
  std::vector<host_tensor> out;
  out.reserve(specs.size());
  const auto n = static_cast<std::size_t>(ranks);
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const shard_spec& s = specs[i];
    const bool mine = owners[i] == me;
    std::vector<std::int64_t> shape = s.shape;
    if (s.shard_dim) shape[static_cast<std::size_t>(*s.shard_dim)] /= ranks;
    host_tensor& r = out.emplace_back(host_tensor::uninitialized(s.dtype, shape));
    if (!s.shard_dim) {
      if (mine) std::memcpy(r.data(), full[i]->data(), r.nbytes());
      MPI_Bcast(r.data(), static_cast<int>(r.nbytes()), MPI_BYTE, owners[i], comm);
      continue;
    }
    const void* send = nullptr;
    if (mine) {
      send = full[i]->data();
      if (*s.shard_dim == 1) {  // rows of n runs: run p of every row goes to shard p
        const auto* from = static_cast<const std::byte*>(full[i]->data());
        const std::size_t rows = static_cast<std::size_t>(s.shape[0]);
        const std::size_t run = r.nbytes() / rows;
        for (std::size_t row = 0; row < rows; ++row) {
          for (std::size_t p = 0; p < n; ++p) {
            std::memcpy(scratch.data() + p * r.nbytes() + row * run, from + (row * n + p) * run, run);
          }
        }
        send = scratch.data();
      }
    }
    MPI_Scatter(send, static_cast<int>(r.nbytes()), MPI_BYTE, r.data(), static_cast<int>(r.nbytes()),
                MPI_BYTE, owners[i], comm);
  }
  return out;
}

struct side {
  std::vector<double> seconds;
  call_counts calls{};
  std::size_t wrong = 0;
};

// One timed run of `fn` on every rank: barrier, run while counting MPI calls, the slowest rank's time.
template <class Fn>
auto timed(side& s, bool keep, Fn&& fn) {
  PMPI_Barrier(MPI_COMM_WORLD);
  counted.fill(0);
  const double t0 = PMPI_Wtime();
  counting = true;
  auto result = fn();
  counting = false;
  const double mine = PMPI_Wtime() - t0;
  double slowest = 0;
  PMPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  if (keep) s.seconds.push_back(slowest);
  s.calls = counted;
  return result;
}

std::uint64_t total(const call_counts& c, std::size_t from = 0, std::size_t to = c_calls) {
  std::uint64_t t = 0;
  for (std::size_t k = from; k < to; ++k) t += c[k];
  return t;
}

std::string breakdown(const call_counts& c) {
  std::string s;
  for (std::size_t k = 0; k < c_calls; ++k) {
    if (c[k] != 0) s += (s.empty() ? "" : ", ") + std::string(call_names[k]) + " " + std::to_string(c[k]);
  }
  return s;
}

int run(const config& cfg) {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  MPI_Comm user = MPI_COMM_NULL;  // the hand-written side's own communicator
  PMPI_Comm_dup(MPI_COMM_WORLD, &user);
  const int me = comm.rank(), ranks = comm.size();
  const std::vector<shard_spec> specs = model(cfg, ranks);
  const redist::shard_options options{.max_batch_bytes = cfg.budget};
  const redist::shard_plan plan = redist::plan_shards(specs, ranks, options);

  // The checkpoint: each owner holds its full tensors; load hands out views of them, so neither side pays
  // for reading.
  std::vector<std::optional<host_tensor>> full(specs.size());
  std::size_t total_bytes = 0, largest = 0, replicated = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    total_bytes += bytes_of(specs[i]);
    largest = std::max(largest, bytes_of(specs[i]));
    replicated += specs[i].shard_dim ? 0 : 1;
    if (plan.owners[i] == me) full[i].emplace(make_full(specs[i], i));
  }
  std::vector<std::byte> scratch(largest);
  auto load = [&](std::size_t i) {
    host_tensor& t = *full[i];
    return redist::host_tensor_view(t);
  };

  // Three sides: shard_scatter staging in a workspace allocated once (as the hand-written side reuses its
  // scratch), shard_scatter allocating its staging in each call, and the hand-written loop.
  std::vector<std::byte> workspace(redist::shard_workspace_bytes(specs, me, ranks, options));
  const redist::shard_options with_workspace{.max_batch_bytes = cfg.budget, .workspace = workspace};
  const char* names[3] = {"shard_scatter, workspace", "shard_scatter, own staging",
                          "MPI_Scatter/MPI_Bcast per tensor"};
  side sides[3];
  auto run_side = [&](int k, bool keep, bool last) {
    side& s = sides[k];
    if (k == 2) {
      auto got = timed(s, keep, [&] { return by_hand(user, me, ranks, specs, plan.owners, full, scratch); });
      for (std::size_t i = 0; last && cfg.check && i < specs.size(); ++i) {
        s.wrong += wrong_elements(specs[i], i, got[i], me, ranks);
      }
      return;
    }
    const redist::shard_options& o = k == 0 ? with_workspace : options;
    auto got = timed(s, keep, [&] { return redist::shard_scatter(comm, specs, load, o); });
    for (std::size_t i = 0; last && cfg.check && i < specs.size(); ++i) {
      s.wrong += got[i].name == specs[i].name ? wrong_elements(specs[i], i, got[i].tensor, me, ranks) : 1;
    }
  };
  for (int it = 0; it < cfg.warmup + cfg.iters; ++it) {
    for (int k = 0; k < 3; ++k) run_side((it + k) % 3, it >= cfg.warmup, it + 1 == cfg.warmup + cfg.iters);
  }

  // Per side: #wrong (summed over ranks), then MPI calls and communication calls (max over ranks).
  std::uint64_t mine[9] = {}, all[9] = {};
  for (int k = 0; k < 3; ++k) {
    mine[k] = sides[k].wrong;
    mine[3 + k] = total(sides[k].calls);
    mine[6 + k] = total(sides[k].calls, 0, c_first_local);
  }
  PMPI_Allreduce(mine, all, 3, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  PMPI_Allreduce(mine + 3, all + 3, 6, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  if (me == 0) {
    std::printf(
        "bench_shard: %d ranks, %zu tensors (%zu replicated; %s), %.1f MB, "
        "max_batch_bytes %zu: %zu batches; median of %d runs after %d warm-up, max over ranks%s\n",
        ranks, specs.size(), replicated, cfg.large ? "bf16, f32" : "bf16, i8, f16, f32, f64",
        static_cast<double>(total_bytes) / 1e6, cfg.budget, plan.batches(), cfg.iters, cfg.warmup,
        cfg.quick ? " (--quick)" : "");
    const double hand = redist::bench::median(sides[2].seconds);
    for (int k = 0; k < 3; ++k) {
      const double t = redist::bench::median(sides[k].seconds);
      std::printf("  %-34s %9.3f ms %8.1f MB/s  MPI calls/rank %5llu, communication %5llu (rank 0: %s)\n",
                  names[k], t * 1e3, static_cast<double>(total_bytes) / t / 1e6,
                  static_cast<unsigned long long>(all[3 + k]), static_cast<unsigned long long>(all[6 + k]),
                  breakdown(sides[k].calls).c_str());
    }
    for (int k = 0; k < 2; ++k) {
      const double speedup = hand / redist::bench::median(sides[k].seconds);
      auto fewer = [&](std::size_t at) {
        return static_cast<double>(all[at + 2]) /
               static_cast<double>(std::max<std::uint64_t>(all[at + static_cast<std::size_t>(k)], 1));
      };
      const double target = cfg.large ? 1 : 2;  // the large model: copy-bound, no call target
      std::printf(
          "  %-34s speedup %.2fx (target >= %.0fx: %s), fewer MPI calls %.1fx%s, communication %.1fx\n",
          names[k], speedup, target, speedup >= target ? "met" : "MISSED", fewer(3),
          cfg.large         ? ""
          : fewer(3) >= 100 ? " (target >= 100x: met)"
                            : " (target >= 100x: MISSED)",
          fewer(6));
      const char* model = cfg.large ? "large" : cfg.quick ? "small" : "default";
      redist::bench::say_ratio(me, "bench_shard",
                               std::string(model) + (k == 0 ? ":workspace" : ":own-staging") + "/per-tensor",
                               1 / speedup);
    }
    if (cfg.check) {
      std::printf("  #wrong elements: %llu, %llu, %llu\n", static_cast<unsigned long long>(all[0]),
                  static_cast<unsigned long long>(all[1]), static_cast<unsigned long long>(all[2]));
    } else {
      std::printf("  results not checked (--check)\n");
    }
  }
  PMPI_Comm_free(&user);
  return all[0] + all[1] + all[2] == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 1;
  try {
    status = run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_shard: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return status;
}
