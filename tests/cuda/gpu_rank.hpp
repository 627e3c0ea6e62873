// Test helper for the CUDA MPI tests (tests/cuda/mpi_test_*.cu): this rank's GPU and a stream of its own
// (synchronized by the tests only), host tensors up and down, and the two transports every op is checked
// over: host-staged MPI with the ranks sharing the GPUs, on the world and numbered backwards, and NCCL at one
// rank per communicator (NCCL refuses two ranks of one communicator on a GPU).
#pragma once

#include <cuda_runtime.h>
#include <doctest/doctest.h>
#include <mpi.h>

#include <vector>

#include "../mpi/mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/comm/mpi/device.hpp"
#include "redist/comm/nccl.hpp"
#include "redist/comm/self.hpp"
#include "redist/core/cuda/runtime.hpp"
#include "redist/core/cuda/tensor.hpp"
#include "redist/core/host_tensor.hpp"

namespace redist::test {

struct gpu_rank {
  int device = 0;
  cudaStream_t stream{};
  gpu_rank() {
    int n = 0;
    detail::cuda_check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
    device = world().rank % n;
    detail::cuda_check(cudaSetDevice(device), "cudaSetDevice");
    detail::cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  gpu_rank(const gpu_rank&) = delete;
  gpu_rank& operator=(const gpu_rank&) = delete;
  ~gpu_rank() { cudaStreamDestroy(stream); }
  void sync() const { detail::cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize"); }

  // A device copy of h, complete on return.
  cuda_tensor up(const host_tensor& h) const {
    cuda_tensor t(h.dtype(), {h.shape().begin(), h.shape().end()}, {stream, nullptr});
    detail::cuda_check(cudaMemcpyAsync(t.data(), h.data(), t.nbytes(), cudaMemcpyHostToDevice, stream),
                       "upload");
    sync();
    return t;
  }
  // A host copy of t once the work queued on the stream (and on `also`, when given) is done.
  host_tensor down(const cuda_tensor& t, cudaStream_t also = nullptr) const {
    host_tensor h(t.dtype(), {t.shape().begin(), t.shape().end()});
    if (also != nullptr) detail::cuda_check(cudaStreamSynchronize(also), "cudaStreamSynchronize");
    sync();
    detail::cuda_check(cudaMemcpyAsync(h.data(), t.data(), t.nbytes(), cudaMemcpyDeviceToHost, stream),
                       "download");
    sync();
    return h;
  }
};

// check(host, comm) (host: an mpi_communicator of the same ranks as comm) true on every rank, over
// host-staged MPI in rounds of a small staging on the world and numbered backwards.
template <class Check>
void over_host_staged_mpi(const gpu_rank& g, Check check) {
  for (const bool backwards : {false, true}) {
    auto owned = backwards ? reversed_world() : split_world(true);
    const mpi_communicator host(owned.get());
    const mpi_device_communicator comm(host, g.stream, {.staging_bytes = 4096});
    CAPTURE(backwards);
    CHECK(all_ranks(check(host, comm)));
  }
}

// The same over an NCCL communicator of this rank alone.
template <class Check>
void over_nccl_one_rank(const gpu_rank& g, Check check) {
  const self_communicator self;
  const nccl_communicator comm = nccl_communicator::create(self, g.device, g.stream);
  CHECK(all_ranks(check(mpi_communicator(MPI_COMM_SELF), comm)));
}

}  // namespace redist::test
