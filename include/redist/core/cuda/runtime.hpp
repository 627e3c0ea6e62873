// The CUDA runtime as the library uses it from host code (no kernels, no nvcc needed): errors turned into
// redist::error, and an event that marks a point on a stream and is polled, never waited on device-wide.
#pragma once

#include <cuda_runtime_api.h>

#include <utility>

#include "redist/core/error.hpp"

namespace redist::detail {

// Throws redist::error naming the call and CUDA's own text unless rc is cudaSuccess.
inline void cuda_check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess)
    fail("redist: ", what, " failed: ", cudaGetErrorName(rc), ": ", cudaGetErrorString(rc));
}

// An owned cudaEvent_t without timing (the cheapest kind), recorded on a stream and queried. Move-only.
class cuda_event {
 public:
  cuda_event() { cuda_check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate"); }
  cuda_event(cuda_event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  cuda_event& operator=(cuda_event&& other) noexcept {
    std::swap(event_, other.event_);
    return *this;
  }
  cuda_event(const cuda_event&) = delete;
  cuda_event& operator=(const cuda_event&) = delete;
  ~cuda_event() {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }

  void record(cudaStream_t stream) { cuda_check(cudaEventRecord(event_, stream), "cudaEventRecord"); }
  // Whether the work before the last record() is done; throws on an error of that work.
  bool done() const {
    const cudaError_t rc = cudaEventQuery(event_);
    if (rc == cudaErrorNotReady) return false;
    cuda_check(rc, "cudaEventQuery");
    return true;
  }
  cudaEvent_t native() const noexcept { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace redist::detail
