// The MPI backend, redist::mpi_communicator over a user's MPI_Comm, and its requests and point-to-point
// groups; the one header a user of MPI includes (redist/redist.hpp includes no backend).
#pragma once

#include "redist/comm/mpi/communicator.hpp"
#include "redist/comm/mpi/core.hpp"
#include "redist/comm/mpi/request.hpp"
