// The MPI probe's wrappers: every MPI function redist's MPI backend and the benchmarks' hand-written
// baselines call, defined here and forwarded to its PMPI_ twin, counting each call while recording and
// failing the one REDIST_FAULT names. Recording allocates nothing (the tables are reserved when it starts),
// so that a program counting its own allocations beside it counts none of the probe's.
#include "mpi_probe.hpp"

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

namespace redist::test::mpi_probe {
namespace {

constexpr std::size_t sequence_limit = 4096;
constexpr std::size_t function_limit = 128;  // distinct functions recorded without reallocating the table
constexpr std::size_t request_limit = 4096;  // pending requests whose communicator is remembered

// Which communicator a pending request started while recording belongs to: its completion's failure is raised
// on that one's handler, as MPI does. A fixed array (no allocation); a request beyond its capacity, or
// started before recording, is taken as MPI_COMM_WORLD's.
struct request_table {
  std::array<MPI_Request, request_limit> request{};
  std::array<MPI_Comm, request_limit> comm{};
  std::size_t used = 0;

  void add(MPI_Request r, MPI_Comm c) noexcept {
    if (used == request_limit) return;
    request[used] = r;
    comm[used] = c;
    ++used;
  }
  std::size_t find(MPI_Request r) const noexcept {
    for (std::size_t i = used; i-- > 0;)
      if (request[i] == r) return i;
    return used;
  }
  MPI_Comm comm_of(MPI_Request r) const noexcept {
    const std::size_t i = find(r);
    return i == used ? MPI_COMM_WORLD : comm[i];
  }
  void erase(MPI_Request r) noexcept {
    const std::size_t i = find(r);
    if (i == used) return;
    --used;
    request[i] = request[used];
    comm[i] = comm[used];
  }
};

struct state {
  bool on = false;
  bool configured = false;
  std::optional<fault> f;
  bool fired = false;
  int world_rank = -1;
  std::vector<call_count> table;
  std::vector<const char*> order;
  request_table requests;
};

// Never destroyed: MPI calls made while static objects go away still find it.
state& st() {
  static state* s = new state;
  return *s;
}

std::optional<fault> parse(std::string_view text) {
  const std::size_t a = text.find(':');
  const std::size_t b = a == std::string_view::npos ? a : text.find(':', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  fault f;
  f.function = std::string(text.substr(0, a));
  const std::string_view rank = text.substr(a + 1, b - a - 1), occurrence = text.substr(b + 1);
  if (std::from_chars(rank.data(), rank.data() + rank.size(), f.rank).ec != std::errc() ||
      std::from_chars(occurrence.data(), occurrence.data() + occurrence.size(), f.occurrence).ec !=
          std::errc() ||
      f.function.empty() || f.occurrence == 0) {
    return std::nullopt;
  }
  return f;
}

void configure() {
  state& s = st();
  if (s.configured) return;
  s.configured = true;
  PMPI_Comm_rank(MPI_COMM_WORLD, &s.world_rank);
  if (const char* text = std::getenv("REDIST_FAULT"); text != nullptr && *text != '\0') {
    s.f = parse(text);
    if (!s.f) {
      std::fprintf(stderr, "mpi_probe: REDIST_FAULT=%s is not FUNCTION:RANK:OCCURRENCE\n", text);
      std::abort();  // a misspelt fault must not pass as a run without one
    }
  }
}

std::uint64_t bytes(int count, MPI_Datatype type) {
  int size = 0;
  if (count <= 0 || type == MPI_DATATYPE_NULL || PMPI_Type_size(type, &size) != MPI_SUCCESS || size <= 0)
    return 0;
  return static_cast<std::uint64_t>(count) * static_cast<std::uint64_t>(size);
}

std::uint64_t sum_bytes(int n, const int counts[], const MPI_Datatype types[]) {
  std::uint64_t total = 0;
  for (int p = 0; p < n; ++p) total += bytes(counts[p], types[p]);
  return total;
}

std::uint64_t sum_bytes(int n, const int counts[], MPI_Datatype type) {
  std::uint64_t total = 0;
  for (int p = 0; p < n; ++p) total += bytes(counts[p], type);
  return total;
}

int size_of(MPI_Comm comm) {
  int n = 0;
  PMPI_Comm_size(comm, &n);
  return n;
}

int rank_in(MPI_Comm comm) {
  int r = 0;
  PMPI_Comm_rank(comm, &r);
  return r;
}

std::uint64_t times(std::uint64_t b, int n) { return b * static_cast<std::uint64_t>(n < 0 ? 0 : n); }

// The injected failure, raised as MPI raises its own: a handler that aborts aborts, MPI_ERRORS_RETURN
// returns the code.
int failure(MPI_Comm comm) {
  PMPI_Comm_call_errhandler(comm == MPI_COMM_NULL ? MPI_COMM_WORLD : comm, MPI_ERR_OTHER);
  return MPI_ERR_OTHER;
}

MPI_Comm comm_of(MPI_Request r) { return st().requests.comm_of(r); }

// Only while recording: a failure is injected only then, and the benchmarks' timed calls pay nothing.
int started(int rc, MPI_Request* r, MPI_Comm comm) {
  if (st().on && rc == MPI_SUCCESS && r != nullptr && *r != MPI_REQUEST_NULL) st().requests.add(*r, comm);
  return rc;
}

void forget(MPI_Request r) { st().requests.erase(r); }

}  // namespace

const char* kind_name(call_kind kind) noexcept {
  switch (kind) {
    case call_kind::collective:
      return "collective";
    case call_kind::point_to_point:
      return "point_to_point";
    case call_kind::completion:
      return "completion";
    case call_kind::local:
      return "local";
  }
  return "unknown";
}

void start() {
  configure();
  state& s = st();
  s.table.clear();
  s.order.clear();
  s.table.reserve(function_limit);
  s.order.reserve(sequence_limit);
  s.requests.used = 0;
  s.on = true;
}

void stop() { st().on = false; }
bool recording() noexcept { return st().on; }
std::vector<call_count> counts() { return st().table; }
const std::vector<const char*>& sequence() noexcept { return st().order; }

call_count total(call_kind kind) {
  call_count t;
  t.function = kind_name(kind);
  t.kind = kind;
  for (const call_count& c : st().table) {
    if (c.kind != kind) continue;
    t.calls += c.calls;
    t.bytes_out += c.bytes_out;
    t.bytes_in += c.bytes_in;
  }
  return t;
}

const fault* configured_fault() {
  configure();
  return st().f ? &*st().f : nullptr;
}

bool fault_fired() noexcept { return st().fired; }

bool record(const char* function, call_kind kind, std::uint64_t bytes_out, std::uint64_t bytes_in) {
  state& s = st();
  if (!s.on) return false;
  call_count* c = nullptr;
  for (call_count& e : s.table)
    if (std::strcmp(e.function, function) == 0) c = &e;
  if (c == nullptr) {
    if (s.table.size() == s.table.capacity()) return false;  // more functions than reserved: not counted
    s.table.push_back({function, kind, 0, 0, 0});
    c = &s.table.back();
  }
  ++c->calls;
  c->bytes_out += bytes_out;
  c->bytes_in += bytes_in;
  if (s.order.size() < sequence_limit) s.order.push_back(function);
  if (!s.f || s.fired || s.f->rank != s.world_rank || s.f->occurrence != c->calls ||
      s.f->function != function)
    return false;
  s.fired = true;
  return true;
}

}  // namespace redist::test::mpi_probe

namespace {
namespace probe = redist::test::mpi_probe;
using probe::bytes;
using probe::call_kind;
using probe::comm_of;
using probe::failure;
using probe::forget;
using probe::rank_in;
using probe::size_of;
using probe::started;
using probe::sum_bytes;
using probe::times;
}  // namespace

extern "C" {

// ---- collectives
// --------------------------------------------------------------------------------------------
int MPI_Bcast(void* buf, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  const bool mine = probe::recording() && rank_in(comm) == root;
  const std::uint64_t b = probe::recording() ? bytes(count, type) : 0;
  if (probe::record("MPI_Bcast", call_kind::collective, mine ? b : 0, mine ? 0 : b)) return failure(comm);
  return PMPI_Bcast(buf, count, type, root, comm);
}

int MPI_Ibcast(void* buf, int count, MPI_Datatype type, int root, MPI_Comm comm, MPI_Request* r) {
  const bool mine = probe::recording() && rank_in(comm) == root;
  const std::uint64_t b = probe::recording() ? bytes(count, type) : 0;
  if (probe::record("MPI_Ibcast", call_kind::collective, mine ? b : 0, mine ? 0 : b)) return failure(comm);
  return started(PMPI_Ibcast(buf, count, type, root, comm, r), r, comm);
}

int MPI_Allreduce(const void* send, void* recv, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  const std::uint64_t b = probe::recording() ? bytes(count, type) : 0;
  if (probe::record("MPI_Allreduce", call_kind::collective, b, b)) return failure(comm);
  return PMPI_Allreduce(send, recv, count, type, op, comm);
}

int MPI_Iallreduce(const void* send, void* recv, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm,
                   MPI_Request* r) {
  const std::uint64_t b = probe::recording() ? bytes(count, type) : 0;
  if (probe::record("MPI_Iallreduce", call_kind::collective, b, b)) return failure(comm);
  return started(PMPI_Iallreduce(send, recv, count, type, op, comm, r), r, comm);
}

int MPI_Allgather(const void* send, int scount, MPI_Datatype stype, void* recv, int rcount,
                  MPI_Datatype rtype, MPI_Comm comm) {
  const bool on = probe::recording();
  if (probe::record("MPI_Allgather", call_kind::collective, on ? bytes(scount, stype) : 0,
                    on ? times(bytes(rcount, rtype), size_of(comm)) : 0))
    return failure(comm);
  return PMPI_Allgather(send, scount, stype, recv, rcount, rtype, comm);
}

int MPI_Iallgather(const void* send, int scount, MPI_Datatype stype, void* recv, int rcount,
                   MPI_Datatype rtype, MPI_Comm comm, MPI_Request* r) {
  const bool on = probe::recording();
  if (probe::record("MPI_Iallgather", call_kind::collective, on ? bytes(scount, stype) : 0,
                    on ? times(bytes(rcount, rtype), size_of(comm)) : 0))
    return failure(comm);
  return started(PMPI_Iallgather(send, scount, stype, recv, rcount, rtype, comm, r), r, comm);
}

int MPI_Allgatherv(const void* send, int scount, MPI_Datatype stype, void* recv, const int rcounts[],
                   const int displs[], MPI_Datatype rtype, MPI_Comm comm) {
  const bool on = probe::recording();
  if (probe::record("MPI_Allgatherv", call_kind::collective, on ? bytes(scount, stype) : 0,
                    on ? sum_bytes(size_of(comm), rcounts, rtype) : 0))
    return failure(comm);
  return PMPI_Allgatherv(send, scount, stype, recv, rcounts, displs, rtype, comm);
}

int MPI_Alltoall(const void* send, int scount, MPI_Datatype stype, void* recv, int rcount, MPI_Datatype rtype,
                 MPI_Comm comm) {
  const bool on = probe::recording();
  const int n = on ? size_of(comm) : 0;
  if (probe::record("MPI_Alltoall", call_kind::collective, times(bytes(scount, stype), n),
                    times(bytes(rcount, rtype), n)))
    return failure(comm);
  return PMPI_Alltoall(send, scount, stype, recv, rcount, rtype, comm);
}

int MPI_Alltoallv(const void* send, const int scounts[], const int sdispls[], MPI_Datatype stype, void* recv,
                  const int rcounts[], const int rdispls[], MPI_Datatype rtype, MPI_Comm comm) {
  const bool on = probe::recording();
  const int n = on ? size_of(comm) : 0;
  // In place, the receive buffer's blocks are what is sent.
  const std::uint64_t in = sum_bytes(n, rcounts, rtype);
  if (probe::record("MPI_Alltoallv", call_kind::collective,
                    send == MPI_IN_PLACE ? in : sum_bytes(n, scounts, stype), in))
    return failure(comm);
  return PMPI_Alltoallv(send, scounts, sdispls, stype, recv, rcounts, rdispls, rtype, comm);
}

int MPI_Ialltoallv(const void* send, const int scounts[], const int sdispls[], MPI_Datatype stype, void* recv,
                   const int rcounts[], const int rdispls[], MPI_Datatype rtype, MPI_Comm comm,
                   MPI_Request* r) {
  const bool on = probe::recording();
  const int n = on ? size_of(comm) : 0;
  const std::uint64_t in = sum_bytes(n, rcounts, rtype);
  if (probe::record("MPI_Ialltoallv", call_kind::collective,
                    send == MPI_IN_PLACE ? in : sum_bytes(n, scounts, stype), in))
    return failure(comm);
  return started(PMPI_Ialltoallv(send, scounts, sdispls, stype, recv, rcounts, rdispls, rtype, comm, r), r,
                 comm);
}

int MPI_Alltoallw(const void* send, const int scounts[], const int sdispls[], const MPI_Datatype stypes[],
                  void* recv, const int rcounts[], const int rdispls[], const MPI_Datatype rtypes[],
                  MPI_Comm comm) {
  const bool on = probe::recording();
  const int n = on ? size_of(comm) : 0;
  if (probe::record("MPI_Alltoallw", call_kind::collective, sum_bytes(n, scounts, stypes),
                    sum_bytes(n, rcounts, rtypes)))
    return failure(comm);
  return PMPI_Alltoallw(send, scounts, sdispls, stypes, recv, rcounts, rdispls, rtypes, comm);
}

int MPI_Ialltoallw(const void* send, const int scounts[], const int sdispls[], const MPI_Datatype stypes[],
                   void* recv, const int rcounts[], const int rdispls[], const MPI_Datatype rtypes[],
                   MPI_Comm comm, MPI_Request* r) {
  const bool on = probe::recording();
  const int n = on ? size_of(comm) : 0;
  if (probe::record("MPI_Ialltoallw", call_kind::collective, sum_bytes(n, scounts, stypes),
                    sum_bytes(n, rcounts, rtypes)))
    return failure(comm);
  return started(PMPI_Ialltoallw(send, scounts, sdispls, stypes, recv, rcounts, rdispls, rtypes, comm, r), r,
                 comm);
}

// Rooted collectives: the root's send arguments (and a gather's receive arguments) count only there, where
// they are significant (elsewhere they may be null); MPI_IN_PLACE at the root moves nothing of its own.
int MPI_Scatter(const void* send, int scount, MPI_Datatype stype, void* recv, int rcount, MPI_Datatype rtype,
                int root, MPI_Comm comm) {
  const bool on = probe::recording();
  const bool mine = on && rank_in(comm) == root;
  if (probe::record("MPI_Scatter", call_kind::collective,
                    mine ? times(bytes(scount, stype), size_of(comm)) : 0,
                    on && recv != MPI_IN_PLACE ? bytes(rcount, rtype) : 0))
    return failure(comm);
  return PMPI_Scatter(send, scount, stype, recv, rcount, rtype, root, comm);
}

int MPI_Scatterv(const void* send, const int scounts[], const int sdispls[], MPI_Datatype stype, void* recv,
                 int rcount, MPI_Datatype rtype, int root, MPI_Comm comm) {
  const bool on = probe::recording();
  const bool mine = on && rank_in(comm) == root;
  if (probe::record("MPI_Scatterv", call_kind::collective,
                    mine ? sum_bytes(size_of(comm), scounts, stype) : 0,
                    on && recv != MPI_IN_PLACE ? bytes(rcount, rtype) : 0))
    return failure(comm);
  return PMPI_Scatterv(send, scounts, sdispls, stype, recv, rcount, rtype, root, comm);
}

int MPI_Gather(const void* send, int scount, MPI_Datatype stype, void* recv, int rcount, MPI_Datatype rtype,
               int root, MPI_Comm comm) {
  const bool on = probe::recording();
  const bool mine = on && rank_in(comm) == root;
  if (probe::record("MPI_Gather", call_kind::collective,
                    on && send != MPI_IN_PLACE ? bytes(scount, stype) : 0,
                    mine ? times(bytes(rcount, rtype), size_of(comm)) : 0))
    return failure(comm);
  return PMPI_Gather(send, scount, stype, recv, rcount, rtype, root, comm);
}

int MPI_Gatherv(const void* send, int scount, MPI_Datatype stype, void* recv, const int rcounts[],
                const int rdispls[], MPI_Datatype rtype, int root, MPI_Comm comm) {
  const bool on = probe::recording();
  const bool mine = on && rank_in(comm) == root;
  if (probe::record("MPI_Gatherv", call_kind::collective,
                    on && send != MPI_IN_PLACE ? bytes(scount, stype) : 0,
                    mine ? sum_bytes(size_of(comm), rcounts, rtype) : 0))
    return failure(comm);
  return PMPI_Gatherv(send, scount, stype, recv, rcounts, rdispls, rtype, root, comm);
}

int MPI_Barrier(MPI_Comm comm) {
  if (probe::record("MPI_Barrier", call_kind::collective, 0, 0)) return failure(comm);
  return PMPI_Barrier(comm);
}

// Creating and freeing communicators is collective over their members, as the standard has it.
int MPI_Comm_dup(MPI_Comm comm, MPI_Comm* out) {
  if (probe::record("MPI_Comm_dup", call_kind::collective, 0, 0)) return failure(comm);
  return PMPI_Comm_dup(comm, out);
}

int MPI_Comm_create_group(MPI_Comm comm, MPI_Group group, int tag, MPI_Comm* out) {
  if (probe::record("MPI_Comm_create_group", call_kind::collective, 0, 0)) return failure(comm);
  return PMPI_Comm_create_group(comm, group, tag, out);
}

int MPI_Comm_free(MPI_Comm* comm) {
  if (probe::record("MPI_Comm_free", call_kind::collective, 0, 0)) return failure(*comm);
  return PMPI_Comm_free(comm);
}

// ---- point to point
// -----------------------------------------------------------------------------------------
int MPI_Send(const void* buf, int count, MPI_Datatype type, int dst, int tag, MPI_Comm comm) {
  if (probe::record("MPI_Send", call_kind::point_to_point, probe::recording() ? bytes(count, type) : 0, 0))
    return failure(comm);
  return PMPI_Send(buf, count, type, dst, tag, comm);
}

int MPI_Recv(void* buf, int count, MPI_Datatype type, int src, int tag, MPI_Comm comm, MPI_Status* status) {
  if (probe::record("MPI_Recv", call_kind::point_to_point, 0, probe::recording() ? bytes(count, type) : 0))
    return failure(comm);
  return PMPI_Recv(buf, count, type, src, tag, comm, status);
}

int MPI_Isend(const void* buf, int count, MPI_Datatype type, int dst, int tag, MPI_Comm comm,
              MPI_Request* r) {
  if (probe::record("MPI_Isend", call_kind::point_to_point, probe::recording() ? bytes(count, type) : 0, 0))
    return failure(comm);
  return started(PMPI_Isend(buf, count, type, dst, tag, comm, r), r, comm);
}

int MPI_Irecv(void* buf, int count, MPI_Datatype type, int src, int tag, MPI_Comm comm, MPI_Request* r) {
  if (probe::record("MPI_Irecv", call_kind::point_to_point, 0, probe::recording() ? bytes(count, type) : 0))
    return failure(comm);
  return started(PMPI_Irecv(buf, count, type, src, tag, comm, r), r, comm);
}

int MPI_Improbe(int src, int tag, MPI_Comm comm, int* flag, MPI_Message* message, MPI_Status* status) {
  if (probe::record("MPI_Improbe", call_kind::point_to_point, 0, 0)) return failure(comm);
  return PMPI_Improbe(src, tag, comm, flag, message, status);
}

int MPI_Imrecv(void* buf, int count, MPI_Datatype type, MPI_Message* message, MPI_Request* r) {
  if (probe::record("MPI_Imrecv", call_kind::point_to_point, 0, probe::recording() ? bytes(count, type) : 0))
    return failure(MPI_COMM_WORLD);
  return PMPI_Imrecv(buf, count, type, message, r);
}

// ---- completion: PMPI first, then the failure (see mpi_probe.hpp)
// ----------------------------------------------
int MPI_Wait(MPI_Request* r, MPI_Status* status) {
  const MPI_Request handle = *r;
  const MPI_Comm comm = comm_of(handle);
  const int rc = PMPI_Wait(r, status);
  forget(handle);
  if (probe::record("MPI_Wait", call_kind::completion, 0, 0)) return failure(comm);
  return rc;
}

// Every request is complete on return, so each is forgotten before PMPI_Waitall nulls the handles.
int MPI_Waitall(int n, MPI_Request rs[], MPI_Status statuses[]) {
  const MPI_Comm comm = n <= 0 ? MPI_COMM_WORLD : comm_of(rs[0]);
  for (int i = 0; i < n; ++i) forget(rs[i]);
  const int rc = PMPI_Waitall(n, rs, statuses);
  if (probe::record("MPI_Waitall", call_kind::completion, 0, 0)) return failure(comm);
  return rc;
}

int MPI_Test(MPI_Request* r, int* flag, MPI_Status* status) {
  const MPI_Request handle = *r;
  const MPI_Comm comm = comm_of(handle);
  const int rc = PMPI_Test(r, flag, status);
  if (rc == MPI_SUCCESS && *flag != 0) forget(handle);
  if (probe::record("MPI_Test", call_kind::completion, 0, 0)) return failure(comm);
  return rc;
}

int MPI_Request_free(MPI_Request* r) {
  const MPI_Request handle = *r;
  if (probe::record("MPI_Request_free", call_kind::completion, 0, 0)) return failure(comm_of(handle));
  forget(handle);
  return PMPI_Request_free(r);
}

int MPI_Cancel(MPI_Request* r) {
  if (probe::record("MPI_Cancel", call_kind::completion, 0, 0)) return failure(comm_of(*r));
  return PMPI_Cancel(r);
}

// ---- local: errors not tied to a communicator go to MPI_COMM_WORLD's handler, as Open MPI raises them
// -----------
int MPI_Get_count(const MPI_Status* status, MPI_Datatype type, int* count) {
  if (probe::record("MPI_Get_count", call_kind::local, 0, 0)) return failure(MPI_COMM_WORLD);
  return PMPI_Get_count(status, type, count);
}

int MPI_Type_create_hindexed(int count, const int lengths[], const MPI_Aint displs[], MPI_Datatype old,
                             MPI_Datatype* out) {
  if (probe::record("MPI_Type_create_hindexed", call_kind::local, 0, 0)) return failure(MPI_COMM_WORLD);
  return PMPI_Type_create_hindexed(count, lengths, displs, old, out);
}

int MPI_Type_commit(MPI_Datatype* type) {
  if (probe::record("MPI_Type_commit", call_kind::local, 0, 0)) return failure(MPI_COMM_WORLD);
  return PMPI_Type_commit(type);
}

int MPI_Type_free(MPI_Datatype* type) {
  if (probe::record("MPI_Type_free", call_kind::local, 0, 0)) return failure(MPI_COMM_WORLD);
  return PMPI_Type_free(type);
}

int MPI_Comm_group(MPI_Comm comm, MPI_Group* group) {
  if (probe::record("MPI_Comm_group", call_kind::local, 0, 0)) return failure(comm);
  return PMPI_Comm_group(comm, group);
}

int MPI_Group_incl(MPI_Group group, int n, const int ranks[], MPI_Group* out) {
  if (probe::record("MPI_Group_incl", call_kind::local, 0, 0)) return failure(MPI_COMM_WORLD);
  return PMPI_Group_incl(group, n, ranks, out);
}

int MPI_Group_free(MPI_Group* group) {
  if (probe::record("MPI_Group_free", call_kind::local, 0, 0)) return failure(MPI_COMM_WORLD);
  return PMPI_Group_free(group);
}

int MPI_Comm_set_errhandler(MPI_Comm comm, MPI_Errhandler handler) {
  if (probe::record("MPI_Comm_set_errhandler", call_kind::local, 0, 0)) return failure(comm);
  return PMPI_Comm_set_errhandler(comm, handler);
}

// Queries the library makes on its way (a request list's destructor asks whether MPI is finalized) count as
// its calls; they never fail here: a program asks them while unwinding.
int MPI_Finalized(int* flag) {
  probe::record("MPI_Finalized", call_kind::local, 0, 0);
  return PMPI_Finalized(flag);
}

int MPI_Initialized(int* flag) {
  probe::record("MPI_Initialized", call_kind::local, 0, 0);
  return PMPI_Initialized(flag);
}

int MPI_Error_string(int code, char* text, int* length) {
  probe::record("MPI_Error_string", call_kind::local, 0, 0);
  return PMPI_Error_string(code, text, length);
}

int MPI_Comm_rank(MPI_Comm comm, int* rank) {
  if (probe::record("MPI_Comm_rank", call_kind::local, 0, 0)) return failure(comm);
  return PMPI_Comm_rank(comm, rank);
}

int MPI_Comm_size(MPI_Comm comm, int* size) {
  if (probe::record("MPI_Comm_size", call_kind::local, 0, 0)) return failure(comm);
  return PMPI_Comm_size(comm, size);
}

}  // extern "C"
