// The scripting interface of the stand-in for libnccl and the CUDA runtime (stand_in.cpp), which the NCCL
// backend's host tests link instead of the real libraries: scripted failures, counted calls, a p2p log.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstddef>

extern "C" {

// Forgets every script, count, log, comm and allocation; the version becomes 22809 and comms size 1 rank 0.
void stand_in_reset(void);
// What ncclGetVersion reports (read by a communicator when it is made).
void stand_in_set_version(int version);
// The shape of the comms ncclCommInitRankConfig makes from now on (its nranks and rank are recorded only).
void stand_in_set_comm_shape(int size, int rank);
// A comm of `size` ranks on which this process is `rank`, as a user would have made it.
ncclComm_t stand_in_new_comm(int size, int rank);
// Every later call of `function` (an nccl* or cuda* name) returns `result` without doing anything.
void stand_in_fail(const char* function, int result);
// What ncclCommGetAsyncError reports once nothing is in progress (ncclSuccess after a reset).
void stand_in_async(int result);
// ncclGroupEnd, ncclCommInitRankConfig, ncclCommFinalize and ncclCommRevoke return ncclInProgress, and the
// comm stays in progress for `polls` ncclCommGetAsyncError queries (-1: forever); 0 turns this off.
void stand_in_in_progress(int polls);
// cudaEventQuery answers cudaErrorNotReady `queries` times (-1: forever) after each cudaEventRecord.
void stand_in_event_ready_after(int queries);
// Stream-taking calls must name this stream; stand_in_wrong_streams() counts those that did not.
void stand_in_expect_stream(cudaStream_t stream);

// Calls of `function` since the reset.
int stand_in_count(const char* function);
// Point-to-point calls since the reset, in order: ncclSend or ncclRecv, the peer, the bytes.
int stand_in_p2p_count(void);
void stand_in_p2p(int i, int* is_send, int* peer, size_t* bytes);
// cudaMemcpyAsync calls by direction (stand-in device memory or not, on each side).
int stand_in_memcpys(int from_device, int to_device);
// Misuse, each of which must stay 0: host memory handed to NCCL, a wrong stream, a call on an aborted or
// destroyed comm, a call between ncclGroupStart and ncclGroupEnd that is not a send or receive.
int stand_in_host_pointers_to_nccl(void);
int stand_in_wrong_streams(void);
int stand_in_dead_comm_uses(void);
// ncclConfig_t::blocking of the last ncclCommInitRankConfig (-2 before any).
int stand_in_last_blocking(void);
// Events and device allocations alive now.
int stand_in_live_events(void);
int stand_in_live_device_allocations(void);
// Whether stand-in device memory (cudaMalloc, cudaMallocAsync) holds ptr.
int stand_in_is_device(const void* ptr);

}  // extern "C"

// The byte the stand-in writes at offset i of a receive from remote peer `peer` (nothing really arrives).
inline unsigned char stand_in_remote_byte(int peer, std::size_t i) {
  return static_cast<unsigned char>((static_cast<std::size_t>(peer) * 31 + i * 7 + 1) & 0xFF);
}
