// A stand-in for libnccl and the CUDA runtime, with their headers' signatures: every function the NCCL
// backend calls, on host memory, scriptable from the tests (stand_in.hpp). Built with REDIST_STAND_IN_OLD it
// is an NCCL older than 2.28.3: no ncclAlltoAll and no ncclCommRevoke, so a program that names either fails
// to link against it.
#include "stand_in.hpp"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

struct ncclComm {
  int size = 1;
  int rank = 0;
  bool dead = false;  // aborted or destroyed
  bool revoked = false;
};

struct CUevent_st {
  int not_ready = 0;  // queries left that answer cudaErrorNotReady (-1: forever)
};

namespace {

struct p2p_call {
  bool send;
  ncclComm* comm;
  int peer;
  std::byte* data;
  std::size_t bytes;
};

struct world {
  int version = 22809;
  int size = 1;
  int rank = 0;
  std::map<std::string, int> failures;
  std::map<std::string, int> counts;
  int async = ncclSuccess;
  int in_progress_script = 0;
  int in_progress_left = 0;
  int event_script = 0;
  cudaStream_t expected = nullptr;
  bool check_stream = false;
  std::vector<std::unique_ptr<ncclComm>> comms;
  std::map<std::uintptr_t, std::size_t> device;  // base -> bytes
  std::set<void*> pinned;
  int group_depth = 0;
  std::vector<p2p_call> pending;
  std::vector<p2p_call> log;
  int memcpys[2][2] = {{0, 0}, {0, 0}};
  int host_pointers = 0;
  int wrong_streams = 0;
  int dead_uses = 0;
  int last_blocking = -2;
  int live_events = 0;
  std::string last_error;
};

world& w() {
  static world instance;
  return instance;
}

// Counts the call and returns its scripted result (0: carry on).
int enter(const char* function) {
  ++w().counts[function];
  const auto it = w().failures.find(function);
  if (it == w().failures.end()) return 0;
  w().last_error = std::string("stand-in: ") + function + " was told to fail";
  return it->second;
}

bool is_device(const void* p) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  auto it = w().device.upper_bound(at);
  if (it == w().device.begin()) return false;
  --it;
  return at < it->first + it->second || (at == it->first);
}

void check_stream(cudaStream_t s) {
  if (w().check_stream && s != w().expected) ++w().wrong_streams;
}

void use(ncclComm* comm) {
  if (comm == nullptr || comm->dead) ++w().dead_uses;
}

void nccl_memory(const void* p, std::size_t bytes) {
  if (bytes != 0 && !is_device(p)) ++w().host_pointers;
}

ncclResult_t in_progress_or(ncclResult_t rc) {
  if (w().in_progress_script == 0) return rc;
  w().in_progress_left = w().in_progress_script;
  return ncclInProgress;
}

std::size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 2;
  }
}

// Completes a group: each comm's sends to itself meet its receives from itself in order; a receive from
// another rank gets stand_in_remote_byte()s, a send to one goes nowhere.
ncclResult_t complete(std::vector<p2p_call>& calls) {
  std::vector<p2p_call*> self_sends;
  std::vector<p2p_call*> self_recvs;
  for (p2p_call& c : calls) {
    if (c.peer == c.comm->rank) {
      (c.send ? self_sends : self_recvs).push_back(&c);
    } else if (!c.send) {
      for (std::size_t i = 0; i < c.bytes; ++i) c.data[i] = std::byte{stand_in_remote_byte(c.peer, i)};
    }
  }
  if (self_sends.size() != self_recvs.size()) return ncclInvalidUsage;
  for (std::size_t k = 0; k < self_sends.size(); ++k) {
    if (self_sends[k]->bytes != self_recvs[k]->bytes) return ncclInvalidUsage;
    std::memcpy(self_recvs[k]->data, self_sends[k]->data, self_sends[k]->bytes);
  }
  calls.clear();
  return ncclSuccess;
}

ncclResult_t p2p(bool send, const void* buf, std::size_t count, ncclDataType_t type, int peer,
                 ncclComm_t comm, cudaStream_t stream) {
  if (const int rc = enter(send ? "ncclSend" : "ncclRecv")) return static_cast<ncclResult_t>(rc);
  use(comm);
  check_stream(stream);
  const std::size_t bytes = count * type_size(type);
  nccl_memory(buf, bytes);
  if (peer < 0 || peer >= comm->size) return ncclInvalidArgument;
  const p2p_call call{send, comm, peer, static_cast<std::byte*>(const_cast<void*>(buf)), bytes};
  w().log.push_back(call);
  w().pending.push_back(call);
  if (w().group_depth == 0) return complete(w().pending);
  return ncclSuccess;
}

// A collective's common checks; its result, or 0 to carry on.
int collective(const char* name, ncclComm_t comm, cudaStream_t stream, const void* in, const void* out,
               std::size_t in_bytes, std::size_t out_bytes) {
  if (const int rc = enter(name)) return rc;
  use(comm);
  check_stream(stream);
  nccl_memory(in, in_bytes);
  nccl_memory(out, out_bytes);
  return 0;
}

}  // namespace

extern "C" {

// ---- scripting ----------------------------------------------------------------------------------------
void stand_in_reset(void) {
  for (const auto& [base, bytes] : w().device) std::free(reinterpret_cast<void*>(base));
  for (void* p : w().pinned) std::free(p);
  w() = world{};
}
void stand_in_set_version(int version) { w().version = version; }
void stand_in_set_comm_shape(int size, int rank) {
  w().size = size;
  w().rank = rank;
}
ncclComm_t stand_in_new_comm(int size, int rank) {
  auto comm = std::make_unique<ncclComm>();
  comm->size = size;
  comm->rank = rank;
  w().comms.push_back(std::move(comm));
  return w().comms.back().get();
}
void stand_in_fail(const char* function, int result) { w().failures[function] = result; }
void stand_in_async(int result) { w().async = result; }
void stand_in_in_progress(int polls) { w().in_progress_script = polls; }
void stand_in_event_ready_after(int queries) { w().event_script = queries; }
void stand_in_expect_stream(cudaStream_t stream) {
  w().expected = stream;
  w().check_stream = true;
}
int stand_in_count(const char* function) {
  const auto it = w().counts.find(function);
  return it == w().counts.end() ? 0 : it->second;
}
int stand_in_p2p_count(void) { return static_cast<int>(w().log.size()); }
void stand_in_p2p(int i, int* is_send, int* peer, size_t* bytes) {
  const p2p_call& c = w().log.at(static_cast<std::size_t>(i));
  *is_send = c.send ? 1 : 0;
  *peer = c.peer;
  *bytes = c.bytes;
}
int stand_in_memcpys(int from_device, int to_device) { return w().memcpys[from_device != 0][to_device != 0]; }
int stand_in_host_pointers_to_nccl(void) { return w().host_pointers; }
int stand_in_wrong_streams(void) { return w().wrong_streams; }
int stand_in_dead_comm_uses(void) { return w().dead_uses; }
int stand_in_last_blocking(void) { return w().last_blocking; }
int stand_in_live_events(void) { return w().live_events; }
int stand_in_live_device_allocations(void) { return static_cast<int>(w().device.size()); }
int stand_in_is_device(const void* ptr) { return is_device(ptr) ? 1 : 0; }

// ---- NCCL ---------------------------------------------------------------------------------------------
ncclResult_t ncclGetVersion(int* version) {
  if (const int rc = enter("ncclGetVersion")) return static_cast<ncclResult_t>(rc);
  *version = w().version;
  return ncclSuccess;
}
ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (const int rc = enter("ncclGetUniqueId")) return static_cast<ncclResult_t>(rc);
  std::memset(id->internal, 0x42, sizeof id->internal);
  return ncclSuccess;
}
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int /*nranks*/, ncclUniqueId /*id*/, int /*rank*/,
                                    ncclConfig_t* config) {
  if (const int rc = enter("ncclCommInitRankConfig")) return static_cast<ncclResult_t>(rc);
  w().last_blocking = config != nullptr ? config->blocking : -2;
  *comm = stand_in_new_comm(w().size, w().rank);
  return in_progress_or(ncclSuccess);
}
ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  if (const int rc = enter("ncclCommFinalize")) return static_cast<ncclResult_t>(rc);
  use(comm);
  return in_progress_or(ncclSuccess);
}
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (const int rc = enter("ncclCommDestroy")) return static_cast<ncclResult_t>(rc);
  use(comm);
  comm->dead = true;
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (const int rc = enter("ncclCommAbort")) return static_cast<ncclResult_t>(rc);
  use(comm);
  comm->dead = true;
  return ncclSuccess;
}
#ifndef REDIST_STAND_IN_OLD
ncclResult_t ncclCommRevoke(ncclComm_t comm, int flags) {
  if (const int rc = enter("ncclCommRevoke")) return static_cast<ncclResult_t>(rc);
  use(comm);
  if (flags != NCCL_REVOKE_DEFAULT) return ncclInvalidArgument;
  comm->revoked = true;
  return in_progress_or(ncclSuccess);
}
#endif
const char* ncclGetErrorString(ncclResult_t rc) {
  switch (rc) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error (stand-in)";
    case ncclSystemError:
      return "unhandled system error (stand-in)";
    case ncclInternalError:
      return "internal error (stand-in)";
    case ncclInvalidArgument:
      return "invalid argument (stand-in)";
    case ncclInvalidUsage:
      return "invalid usage (stand-in)";
    case ncclRemoteError:
      return "remote process exited or there was a network error (stand-in)";
    case ncclInProgress:
      return "NCCL operation in progress";
    default:
      return "unknown result code";
  }
}
const char* ncclGetLastError(ncclComm_t comm) {
  ++w().counts["ncclGetLastError"];
  if (comm != nullptr) use(comm);
  return w().last_error.c_str();
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async) {
  if (const int rc = enter("ncclCommGetAsyncError")) return static_cast<ncclResult_t>(rc);
  use(comm);
  if (w().in_progress_left != 0) {
    if (w().in_progress_left > 0) --w().in_progress_left;
    *async = ncclInProgress;
  } else {
    *async = static_cast<ncclResult_t>(w().async);
  }
  return ncclSuccess;
}
ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  if (const int rc = enter("ncclCommCount")) return static_cast<ncclResult_t>(rc);
  use(comm);
  *count = comm->size;
  return ncclSuccess;
}
ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
  if (const int rc = enter("ncclCommCuDevice")) return static_cast<ncclResult_t>(rc);
  use(comm);
  *device = 0;
  return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (const int rc = enter("ncclCommUserRank")) return static_cast<ncclResult_t>(rc);
  use(comm);
  *rank = comm->rank;
  return ncclSuccess;
}
ncclResult_t ncclGroupStart() {
  if (const int rc = enter("ncclGroupStart")) return static_cast<ncclResult_t>(rc);
  ++w().group_depth;
  return ncclSuccess;
}
ncclResult_t ncclGroupEnd() {
  const int scripted = enter("ncclGroupEnd");
  if (w().group_depth == 0) return ncclInvalidUsage;
  if (--w().group_depth != 0) return ncclSuccess;
  if (scripted != 0) {
    w().pending.clear();
    return static_cast<ncclResult_t>(scripted);
  }
  return in_progress_or(complete(w().pending));
}
ncclResult_t ncclSend(const void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return p2p(true, buf, count, type, peer, comm, stream);
}
ncclResult_t ncclRecv(void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return p2p(false, buf, count, type, peer, comm, stream);
}
// The collectives behave as if every rank passed what this one did.
ncclResult_t ncclAllReduce(const void* in, void* out, size_t count, ncclDataType_t type, ncclRedOp_t /*op*/,
                           ncclComm_t comm, cudaStream_t stream) {
  const std::size_t bytes = count * type_size(type);
  if (const int rc = collective("ncclAllReduce", comm, stream, in, out, bytes, bytes))
    return static_cast<ncclResult_t>(rc);
  std::memmove(out, in, bytes);
  return ncclSuccess;
}
ncclResult_t ncclAllGather(const void* in, void* out, size_t count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream) {
  const std::size_t bytes = count * type_size(type);
  const auto n = static_cast<std::size_t>(comm->size);
  if (const int rc = collective("ncclAllGather", comm, stream, in, out, bytes, n * bytes))
    return static_cast<ncclResult_t>(rc);
  std::memmove(static_cast<std::byte*>(out) + static_cast<std::size_t>(comm->rank) * bytes, in, bytes);
  return ncclSuccess;
}
ncclResult_t ncclBroadcast(const void* in, void* out, size_t count, ncclDataType_t type, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  const std::size_t bytes = count * type_size(type);
  if (const int rc =
          collective("ncclBroadcast", comm, stream, in, out, comm->rank == root ? bytes : 0, bytes))
    return static_cast<ncclResult_t>(rc);
  if (comm->rank == root) {
    std::memmove(out, in, bytes);
  } else {
    for (std::size_t i = 0; i < bytes; ++i)
      static_cast<std::byte*>(out)[i] = std::byte{stand_in_remote_byte(root, i)};
  }
  return ncclSuccess;
}
#ifndef REDIST_STAND_IN_OLD
ncclResult_t ncclAlltoAll(const void* in, void* out, size_t count, ncclDataType_t type, ncclComm_t comm,
                          cudaStream_t stream) {
  const std::size_t bytes = count * type_size(type);
  const auto n = static_cast<std::size_t>(comm->size);
  if (const int rc = collective("ncclAlltoAll", comm, stream, in, out, n * bytes, n * bytes))
    return static_cast<ncclResult_t>(rc);
  const std::size_t own = static_cast<std::size_t>(comm->rank) * bytes;
  std::memmove(static_cast<std::byte*>(out) + own, static_cast<const std::byte*>(in) + own, bytes);
  return ncclSuccess;
}
#endif

// ---- CUDA runtime ---------------------------------------------------------------------------------------
const char* cudaGetErrorName(cudaError_t rc) {
  switch (rc) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    default:
      return "cudaError(stand-in)";
  }
}
const char* cudaGetErrorString(cudaError_t rc) {
  return rc == cudaSuccess ? "no error" : "a scripted failure of the stand-in";
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaGetDevice(int* device) {
  if (const int rc = enter("cudaGetDevice")) return static_cast<cudaError_t>(rc);
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int /*device*/) { return static_cast<cudaError_t>(enter("cudaSetDevice")); }
cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (const int rc = enter("cudaMalloc")) return static_cast<cudaError_t>(rc);
  *p = std::malloc(bytes == 0 ? 1 : bytes);
  w().device[reinterpret_cast<std::uintptr_t>(*p)] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (const int rc = enter("cudaFree")) return static_cast<cudaError_t>(rc);
  if (p == nullptr) return cudaSuccess;
  if (w().device.erase(reinterpret_cast<std::uintptr_t>(p)) == 0) return cudaErrorInvalidValue;
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t stream) {
  check_stream(stream);
  if (const int rc = enter("cudaMallocAsync")) return static_cast<cudaError_t>(rc);
  --w().counts["cudaMalloc"];
  return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t stream) {
  check_stream(stream);
  if (const int rc = enter("cudaFreeAsync")) return static_cast<cudaError_t>(rc);
  --w().counts["cudaFree"];
  return cudaFree(p);
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  if (const int rc = enter("cudaMallocHost")) return static_cast<cudaError_t>(rc);
  *p = std::malloc(bytes == 0 ? 1 : bytes);
  w().pinned.insert(*p);
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  if (const int rc = enter("cudaFreeHost")) return static_cast<cudaError_t>(rc);
  if (w().pinned.erase(p) == 0) return cudaErrorInvalidValue;
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* to, const void* from, size_t bytes, cudaMemcpyKind /*kind*/,
                            cudaStream_t stream) {
  if (const int rc = enter("cudaMemcpyAsync")) return static_cast<cudaError_t>(rc);
  check_stream(stream);
  ++w().memcpys[is_device(from) ? 1 : 0][is_device(to) ? 1 : 0];
  std::memmove(to, from, bytes);
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  ++w().counts["cudaPointerGetAttributes"];
  *a = cudaPointerAttributes{};
  a->type = is_device(p) ? cudaMemoryTypeDevice
                         : (w().pinned.count(const_cast<void*>(p)) != 0 ? cudaMemoryTypeHost
                                                                        : cudaMemoryTypeUnregistered);
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int /*flags*/) {
  if (const int rc = enter("cudaEventCreateWithFlags")) return static_cast<cudaError_t>(rc);
  *event = new CUevent_st;
  ++w().live_events;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (const int rc = enter("cudaEventDestroy")) return static_cast<cudaError_t>(rc);
  delete event;
  --w().live_events;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (const int rc = enter("cudaEventRecord")) return static_cast<cudaError_t>(rc);
  check_stream(stream);
  event->not_ready = w().event_script;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (const int rc = enter("cudaEventQuery")) return static_cast<cudaError_t>(rc);
  if (event->not_ready == 0) return cudaSuccess;
  if (event->not_ready > 0) --event->not_ready;
  return cudaErrorNotReady;
}

}  // extern "C"
