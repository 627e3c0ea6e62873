// The NCCL backend, redist::nccl_communicator over an ncclComm_t and a CUDA stream, and its requests and
// point-to-point groups; the one header a user of NCCL includes (redist/redist.hpp includes no backend).
#pragma once

#include "redist/comm/nccl/communicator.hpp"
#include "redist/comm/nccl/core.hpp"
#include "redist/comm/nccl/request.hpp"
#include "redist/comm/nccl/staging.hpp"
