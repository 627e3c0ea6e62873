// The doctest main of the CUDA tests: without a usable CUDA device the test reports itself skipped (exit
// code 77, which CTest's SKIP_RETURN_CODE turns into "Skipped"), so a machine without a GPU never counts
// these tests as passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cuda_runtime_api.h>
#include <doctest/doctest.h>

#include <cstdio>

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t rc = cudaGetDeviceCount(&devices);
  if (rc != cudaSuccess || devices == 0) {
    std::printf("skipped: no CUDA device (%s)\n", rc != cudaSuccess ? cudaGetErrorString(rc) : "none found");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
