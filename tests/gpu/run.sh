#!/usr/bin/env bash
# The GPU suite, from a clean checkout on a machine with an NVIDIA GPU: builds every CUDA target (Release,
# for this machine's GPU), runs every test labelled gpu (the kernels bit for bit against the host memory
# space, device tensors, NCCL at one rank, the MPI-with-device-tensor runs), then the device benchmarks, and
# prints one summary table. Exits non-zero when a test fails, is skipped (no GPU is not a pass here), or a
# benchmark finds a wrong byte.
#
#   bash tests/gpu/run.sh                one GPU: everything the machine can run
#   REDIST_GPU_BUILD=<dir> ...           build directory (default build/gpu)
#   REDIST_GPU_ARCH=90 ...               CUDA architectures (default: native, this machine's GPU)
#   REDIST_MPI_TEST_NPROCS="2 4 8" ...   the rank counts of the MPI runs (default "1 2 4 8", sharing the GPU);
#                                        on a multi-GPU node each rank takes GPU (local rank mod GPUs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
build="${REDIST_GPU_BUILD:-build/gpu}"
arch="${REDIST_GPU_ARCH:-native}"
nprocs="${REDIST_MPI_TEST_NPROCS:-1 2 4 8}"
start=$(date +%s)

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
bash cmake/install-deps.sh
cmake -S . -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ \
  -DREDIST_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${arch}" -DREDIST_MPI_TEST_NPROCS="${nprocs// /;}" \
  -DREDIST_MPI_RANKS_PER_SLOT=1 >/dev/null
cmake --build "${build}" -j "$(nproc)"

log="${build}/gpu-ctest.log"
status=0
ctest --test-dir "${build}" -L gpu --output-on-failure --timeout 240 -j 1 | tee "${log}" || status=1

bench="${build}/gpu-bench.log"
"${build}/examples/example_bench_device_staging" --check | tee "${bench}" || status=1

echo
echo "| test | result | seconds |"
echo "| --- | --- | --- |"
sed -nE 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: ([^ ]+) \.*[ *]*([A-Za-z]+[A-Za-z ]*[A-Za-z]).* ([0-9.]+) sec$/| \1 | \2 | \3 |/p' "${log}"
grep -q "Skipped\|Not Run" "${log}" && { echo "(a skipped gpu test counts as a failure here)"; status=1; }
echo
echo "bench_device_staging (ratio = algbw / cudaMemcpyAsync D2D algbw):"
grep -E '^ +[0-9]' "${bench}" | awk '{printf "  %-8s piece %8s B: %7s GB/s, ratio %s (target %s %s), #wrong %s\n", $4, $1, $6, $9, $10, $11, $12}'
echo "tests/gpu/run.sh: $( [ ${status} -eq 0 ] && echo passed || echo FAILED ) in $(( $(date +%s) - start )) s"
exit ${status}
