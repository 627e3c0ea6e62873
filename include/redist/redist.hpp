// The umbrella header: everything in redist that needs no MPI, NCCL or CUDA.
// Backends are included on their own (redist/comm/mpi.hpp, redist/comm/nccl.hpp) by those who want them.
#pragma once

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/core/topology.hpp"
