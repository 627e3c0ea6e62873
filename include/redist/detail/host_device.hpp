// REDIST_HOST_DEVICE marks the functions that both the host build and CUDA kernels compile: the element casts
// and the piece tables' index arithmetic, so that a kernel runs exactly the code the host tests check.
#pragma once

#if defined(__CUDACC__)
#define REDIST_HOST_DEVICE __host__ __device__
#else
#define REDIST_HOST_DEVICE
#endif
