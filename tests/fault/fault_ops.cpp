// The fault-injection driver: runs one of redist's operations on every rank with the MPI probe recording,
// with the MPI call or allocation that REDIST_FAULT names failing on one rank, and reports what each rank
// saw.
//
//   fault_ops <op> [--count | --world-fatal]    op: redistribute_plan redistribute_one_call seqpar_all_to_all
//                                                   shard_scatter dispatch
//
// --count prints, per rank, the MPI calls and allocations ("alloc": host tensors and staging, the aligned
// operator new[]) the operation makes, in order. Otherwise every rank prints its outcome and checks its
// result byte for byte when it returned, then the ranks meet at a checkpoint on a communicator of their own:
// when all arrive with the same redist::error, the error was agreed and the operation runs again on the same
// communicator, which must work; when some rank does not arrive in time (its peers may wait for it inside
// MPI, which cannot recover them), MPI_Abort ends every rank, as an application would. MPI_COMM_WORLD gets
// MPI_ERRORS_RETURN, so that failures MPI raises there (datatype calls, MPI_Get_count) reach redist as error
// codes; --world-fatal gives it a handler that, like MPI's default MPI_ERRORS_ARE_FATAL, ends the job (saying
// so).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../mpi/nested_text.hpp"
#include "../probe/mpi_probe.hpp"
#include "../unit/aligned_new.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/dispatch.hpp"
#include "redist/redistribute.hpp"
#include "redist/seqpar.hpp"
#include "redist/shard.hpp"

namespace probe = redist::test::mpi_probe;

// Host tensors and host staging come from the aligned array operator new: each one is a recorded "alloc",
// and the one REDIST_FAULT names throws std::bad_alloc.
void* operator new[](std::size_t size, std::align_val_t align) {
  if (probe::record("alloc", probe::call_kind::local, size, 0)) throw std::bad_alloc();
  return redist::test::aligned_allocation(size, align);
}

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;

int world_rank = 0;

template <class... Parts>
void say(const char* format, Parts... parts) {
  std::printf("fault[%d] ", world_rank);
  if constexpr (sizeof...(Parts) == 0)
    std::fputs(format, stdout);
  else
    std::printf(format, parts...);
  std::printf("\n");
  std::fflush(stdout);
}

// One operation on one communicator: run() is the call under test (and the call after an agreed error),
// check() says what is wrong with this rank's result, empty when every byte is as expected; setup(), when
// given, prepares each run outside the recording, so that only the operation's own calls are counted.
struct op_case {
  std::function<void()> run;
  std::function<std::string()> check;
  std::function<void()> setup = {};
};

std::byte pattern(std::uint64_t a, std::uint64_t b) {
  std::uint64_t x = (a + 1) * 0x9E3779B97F4A7C15ull ^ (b + 7) * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 29;
  return static_cast<std::byte>(x & 0xFF);
}

void fill(std::span<std::byte> bytes, std::uint64_t seed, std::size_t from = 0) {
  for (std::size_t j = 0; j < bytes.size(); ++j) bytes[j] = pattern(seed, from + j);
}

std::string bytes_problem(std::span<const std::byte> got, std::uint64_t seed, std::size_t from,
                          const std::string& what) {
  for (std::size_t j = 0; j < got.size(); ++j)
    if (got[j] != pattern(seed, from + j)) return what + ": byte " + std::to_string(j) + " differs";
  return {};
}

// ---- redistribute: rank r holds samples 10r+1 (3 KiB of i32) and 10r+2 (80 KiB, above Open MPI's eager
// size) and wants rank r+1's, the second first.
std::int64_t tokens_of(sample_id id) { return id % 10 == 1 ? 768 : 20480; }

redist::sequence_batch<> ring_batch(int r) {
  const std::vector<sample_id> ids{10 * static_cast<sample_id>(r) + 1, 10 * static_cast<sample_id>(r) + 2};
  redist::seqlen_table lens;
  std::int64_t rows = 0;
  for (const sample_id id : ids) {
    lens.push_back(std::vector<std::int64_t>{tokens_of(id)});
    rows += tokens_of(id);
  }
  host_tensor t(dtype::i32, {rows});
  std::size_t at = 0;
  for (const sample_id id : ids) {
    const auto n = static_cast<std::size_t>(tokens_of(id)) * 4;
    fill(t.bytes().subspan(at, n), id);
    at += n;
  }
  std::vector<redist::sequence_batch<>::field> fields;
  fields.push_back({"x", dtype::i32, {}, std::move(lens), std::move(t)});
  return redist::sequence_batch<>(ids, std::move(fields));
}

std::vector<sample_id> ring_wanted(int r, int size) {
  const auto next = static_cast<sample_id>((r + 1) % size);
  return {10 * next + 2, 10 * next + 1};
}

std::string ring_problem(const redist::sequence_batch<>& got, const std::vector<sample_id>& wanted) {
  if (!std::ranges::equal(got.ids(), wanted)) return "the result holds other ids";
  const host_tensor& t = got.data("x");
  std::size_t at = 0;
  for (const sample_id id : wanted) {
    const auto n = static_cast<std::size_t>(tokens_of(id)) * 4;
    if (at + n > t.bytes().size()) return "the result is too short";
    if (auto p = bytes_problem(t.bytes().subspan(at, n), id, 0, "sample " + std::to_string(id)); !p.empty())
      return p;
    at += n;
  }
  return at == t.bytes().size() ? std::string() : "the result is too long";
}

op_case redistribute_plan(const redist::mpi_communicator& comm) {
  struct state {
    redist::sequence_batch<> mine;
    std::vector<sample_id> wanted;
    redist::catalog cat;
    redist::plan p;
    redist::sample_store<> store;
  };
  auto s = std::make_shared<state>();
  s->mine = ring_batch(comm.rank());
  s->wanted = ring_wanted(comm.rank(), comm.size());
  redist::world_metadata world = redist::gather_metadata(comm, s->mine);
  std::vector<redist::id_list> wants;
  for (int r = 0; r < comm.size(); ++r) wants.push_back(ring_wanted(r, comm.size()));
  const std::vector<std::string> keys{"x"};
  s->p = redist::plan_all_to_all(world.tracker, wants, keys);
  s->cat = std::move(world.cat);
  return {[s, &comm] { redist::redistribute(comm, s->store, s->p, s->cat); },
          [s] { return ring_problem(s->store.collect(s->wanted, {"x"}), s->wanted); },
          [s] {
            s->store = redist::sample_store<>();
            s->store.add(s->mine);
          }};
}

op_case redistribute_one_call(const redist::mpi_communicator& comm) {
  auto mine = std::make_shared<redist::sequence_batch<>>(ring_batch(comm.rank()));
  auto got = std::make_shared<redist::sequence_batch<>>();
  const std::vector<sample_id> wanted = ring_wanted(comm.rank(), comm.size());
  return {[=, &comm] { *got = redist::redistribute(comm, *mine, wanted); },
          [=] { return ring_problem(*got, wanted); }};
}

// ---- seqpar: x of rank r is i32 [2P, 4, 512], byte j of it pattern(r, j); rank r gets rows 2r, 2r+1 of
// every rank's x, gathered along dim 1: out[a][4g + b] = x_g[2r + a][b].
op_case seqpar_all_to_all(const redist::mpi_communicator& comm) {
  const int P = comm.size();
  auto x = std::make_shared<host_tensor>(dtype::i32, std::vector<std::int64_t>{2 * P, 4, 512});
  fill(x->bytes(), static_cast<std::uint64_t>(comm.rank()));
  auto out = std::make_shared<host_tensor>();
  return {[=, &comm] { *out = redist::seqpar::all_to_all(comm, *x, 0, 1); },
          [=, &comm]() -> std::string {
            const std::size_t row = 512 * 4, P_ = static_cast<std::size_t>(P);
            if (out->bytes().size() != 2 * 4 * P_ * row) return "the output has the wrong size";
            const auto r = static_cast<std::size_t>(comm.rank());
            for (std::size_t a = 0; a < 2; ++a)
              for (std::size_t g = 0; g < P_; ++g)
                for (std::size_t b = 0; b < 4; ++b) {
                  const auto got = out->bytes().subspan(((a * 4 * P_) + 4 * g + b) * row, row);
                  const std::size_t from = (((2 * r + a) * 4) + b) * row;
                  if (auto p = bytes_problem(
                          got, g, from, "out[" + std::to_string(a) + "][" + std::to_string(4 * g + b) + "]");
                      !p.empty())
                    return p;
                }
            return {};
          }};
}

// ---- shard_scatter: a sharded f32 weight on rank 0, a replicated i16 bias on the last rank, a sharded u8
// table on rank 1; rank r's shard of a dim-0 cut is bytes [r n / P, (r + 1) n / P) of the full tensor.
op_case shard_scatter(const redist::mpi_communicator& comm) {
  const int P = comm.size();
  auto specs = std::make_shared<std::vector<redist::shard_spec>>();
  specs->push_back({"w", dtype::f32, {4 * P, 1024}, 0, 0});
  specs->push_back({"b", dtype::i16, {300}, std::nullopt, P - 1});
  specs->push_back({"v", dtype::u8, {5000 * P}, 0, 1 % P});
  auto got = std::make_shared<std::vector<redist::named_tensor<host_tensor>>>();
  return {[=, &comm] {
            *got = redist::shard_scatter(comm, *specs, [&](std::size_t i) {
              host_tensor t((*specs)[i].dtype, (*specs)[i].shape);
              fill(t.bytes(), 100 + i);
              return t;
            });
          },
          [=, &comm]() -> std::string {
            if (got->size() != specs->size()) return "wrong number of results";
            for (std::size_t i = 0; i < specs->size(); ++i) {
              const auto& s = (*specs)[i];
              std::size_t full = redist::size_of(s.dtype);
              for (const auto e : s.shape) full *= static_cast<std::size_t>(e);
              const std::size_t n = s.shard_dim ? full / static_cast<std::size_t>(P) : full;
              const std::size_t from = s.shard_dim ? n * static_cast<std::size_t>(comm.rank()) : 0;
              const auto bytes = (*got)[i].tensor.bytes();
              if ((*got)[i].name != s.name || bytes.size() != n) return "result " + s.name + " is misshapen";
              if (auto p = bytes_problem(bytes, 100 + i, from, "result " + s.name); !p.empty()) return p;
            }
            return {};
          }};
}

// ---- dispatch from rank 0 of the communicator: rank r's item holds a small packed i64 tensor, a 40 KB u8
// tensor and a list of a small f32 tensor and a 70 KB one (both large ones sent on their own).
redist::nested<host_tensor> item_of(int r) {
  using node = redist::nested<host_tensor>;
  auto tensor = [&](dtype t, std::int64_t n, std::uint64_t k) {
    host_tensor x(t, {n});
    fill(x.bytes(), 1000 * static_cast<std::uint64_t>(r) + k);
    return x;
  };
  node::list pair;
  pair.emplace_back(tensor(dtype::f32, 5, 3));
  pair.emplace_back(tensor(dtype::f32, 17500 + r, 4));
  node::fields f;
  f.push_back({"tokens", tensor(dtype::i64, 3 + r, 1)});
  f.push_back({"pixels", tensor(dtype::u8, 40000 + r, 2)});
  f.push_back({"pair", node(std::move(pair))});
  return node(std::move(f));
}

op_case dispatch(const redist::mpi_communicator& comm) {
  auto items = std::make_shared<std::vector<redist::nested<host_tensor>>>();
  if (comm.rank() == 0)
    for (int r = 0; r < comm.size(); ++r) items->push_back(item_of(r));
  auto got = std::make_shared<redist::nested<host_tensor>>();
  return {[=, &comm] { *got = redist::dispatch(comm, *items, 0); },
          [=, &comm]() -> std::string {
            std::string text, want_text;
            std::vector<std::byte> bytes, want_bytes;
            redist::test::describe(*got, text, bytes);
            redist::test::describe(item_of(comm.rank()), want_text, want_bytes);
            if (text != want_text) return "the item is " + text + ", expected " + want_text;
            return bytes == want_bytes ? std::string() : "the item's bytes differ";
          }};
}

struct op_entry {
  const char* name;
  op_case (*make)(const redist::mpi_communicator&);
  bool reversed;  // on the world numbered backwards: its ranks differ from MPI_COMM_WORLD's
};

constexpr op_entry ops[] = {
    {"redistribute_plan", redistribute_plan, false},
    {"redistribute_one_call", redistribute_one_call, true},
    {"seqpar_all_to_all", seqpar_all_to_all, false},
    {"shard_scatter", shard_scatter, false},
    {"dispatch", dispatch, true},
};

struct outcome {
  std::uint64_t kind = 0;  // 0 returned, 1 redist::error, 2 another exception
  std::string message = "returned";
};

outcome outcome_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const redist::error& e) {
    return {1, e.what()};
  } catch (const std::exception& e) {
    return {2, std::string("not a redist::error: ") + e.what()};
  }
  return {};
}

bool names_mpi_failure(const std::string& m) {
  return m.find("MPI_") != std::string::npos && m.find(" failed") != std::string::npos;
}

// The checkpoint: whether every rank arrived within `seconds`, and if so the maximum of each value over the
// ranks. Nonblocking, so a rank whose peers wait inside MPI for it is not held as well.
std::optional<std::vector<std::uint64_t>> meet(MPI_Comm control, std::vector<std::uint64_t> values,
                                               double seconds) {
  std::vector<std::uint64_t> out(values.size());
  MPI_Request r = MPI_REQUEST_NULL;
  MPI_Iallreduce(values.data(), out.data(), static_cast<int>(values.size()), MPI_UINT64_T, MPI_MAX, control,
                 &r);
  const double end = MPI_Wtime() + seconds;
  for (int done = 0;;) {
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    if (done != 0) return out;
    if (MPI_Wtime() > end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

[[noreturn]] void abort_all(const char* why) {
  say("abort: %s", why);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::abort();
}

std::uint64_t hash_of(const std::string& m) { return redist::detail::fingerprint().add(m).value(); }

// The fault run: outcome, check, checkpoint; returns this rank's exit code when every rank arrived.
int fault_run(const op_case& c, MPI_Comm control) {
  if (c.setup) c.setup();
  probe::start();
  const outcome o = outcome_of(c.run);
  probe::stop();
  std::string wrong;
  if (o.kind == 0) wrong = c.check();
  say("outcome %s: %s",
      o.kind == 0   ? "returned"
      : o.kind == 1 ? "redist::error"
                    : "exception",
      o.message.c_str());
  if (o.kind == 0) say("result %s%s", wrong.empty() ? "correct" : "WRONG: ", wrong.c_str());
  if (probe::fault_fired()) say("fired %s", probe::configured_fault()->function.c_str());
  // Ranks that agreed on an error leave the same collective at once, so a rank that threw waits briefly for
  // the others (one that names a failing MPI call or is no redist::error is this rank's alone: more briefly)
  // and then ends the job: its peers may wait for it inside MPI. One that returned waits longer, for them.
  const bool local = o.kind == 2 || (o.kind == 1 && names_mpi_failure(o.message));
  const double grace = o.kind == 0 ? 10.0 : local ? 0.2 : 1.0;
  const std::uint64_t h = o.kind == 0 ? 0 : hash_of(o.message);
  const auto all = meet(control, {o.kind, ~o.kind, h, ~h}, grace);
  if (!all) abort_all("the other ranks did not reach the checkpoint: they wait inside the operation");
  const bool same = (*all)[0] == ~(*all)[1] && (*all)[2] == ~(*all)[3];
  if (!same) {
    say("mixed: the ranks ended the operation differently");
    abort_all("a rank's error was not agreed");
  }
  if (o.kind == 0) {
    say("all returned");
    return wrong.empty() ? 0 : 1;
  }
  say("agreed: every rank caught the same %s", o.kind == 1 ? "redist::error" : "exception");
  if (c.setup) c.setup();
  const outcome again = outcome_of(c.run);
  const std::string wrong_again = again.kind == 0 ? c.check() : again.message;
  say("again %s%s", wrong_again.empty() ? "correct" : "WRONG: ", wrong_again.c_str());
  if (!meet(control, {0}, 10.0)) abort_all("the other ranks did not finish the call after the error");
  return wrong_again.empty() && o.kind == 1 ? 0 : 1;
}

int count_run(const op_case& c) {
  if (c.setup) c.setup();
  probe::start();
  const outcome o = outcome_of(c.run);
  probe::stop();
  std::string line;
  for (const char* f : probe::sequence()) line += std::string(" ") + f;
  say("sequence%s", line.c_str());
  for (const auto& k : probe::counts())
    say("count %s %s calls %llu out %llu in %llu", k.function, probe::kind_name(k.kind),
        static_cast<unsigned long long>(k.calls), static_cast<unsigned long long>(k.bytes_out),
        static_cast<unsigned long long>(k.bytes_in));
  const std::string wrong = o.kind == 0 ? c.check() : o.message;
  say("result %s%s", wrong.empty() ? "correct" : "WRONG: ", wrong.c_str());
  return wrong.empty() ? 0 : 1;
}

// --world-fatal: MPI_COMM_WORLD's handler ends the job, as MPI's default MPI_ERRORS_ARE_FATAL does, but first
// says on this process's stderr that it ran (Open MPI's own message goes through mpirun, and can be lost when
// the job ends at once).
void fatal_on_world(MPI_Comm*, int* code, ...) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(*code, text, &length);
  std::fprintf(stderr, "fault[%d] MPI_COMM_WORLD's error handler ran (%s): the job ends inside MPI\n",
               world_rank, text);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 16);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  const std::string_view mode = argc > 2 ? argv[2] : "";
  MPI_Errhandler world_handler = MPI_ERRORS_RETURN;
  if (mode == "--world-fatal") MPI_Comm_create_errhandler(&fatal_on_world, &world_handler);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, world_handler);
  const op_entry* op = nullptr;
  for (const op_entry& e : ops)
    if (argc > 1 && std::string_view(argv[1]) == e.name) op = &e;
  if (op == nullptr) {
    if (world_rank == 0) std::fprintf(stderr, "usage: fault_ops <op> [--count | --world-fatal]\n");
    MPI_Finalize();
    return 2;
  }
  const bool counting = mode == "--count";
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm control = MPI_COMM_NULL, user = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &control);
  MPI_Comm_split(MPI_COMM_WORLD, 0, op->reversed ? size - 1 - world_rank : world_rank, &user);
  int rc = 0;
  {
    const redist::mpi_communicator comm(user);
    say("op %s on %d ranks, rank %d here", op->name, comm.size(), comm.rank());
    const op_case c = op->make(comm);
    rc = counting ? count_run(c) : fault_run(c, control);
  }
  MPI_Comm_free(&user);
  MPI_Comm_free(&control);
  MPI_Finalize();
  return rc;
}
