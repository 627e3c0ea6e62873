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
#   REDIST_BENCH_SAMPLES=256 ...         samples per rank of the bench_redistribute_device runs (default 256)
#
# bench_redistribute_device runs over NCCL at 1 rank and over host-staged MPI at 2, 4 and 8 ranks sharing the
# GPU; on a node of N >= 2 GPUs also over NCCL at N ranks, one GPU each, which by hand is:
#   mpirun -np N build/gpu/examples/example_bench_redistribute_device --comm nccl --check --matrix a2av-
# (a2av-<layout>.txt then holds each layout's traffic matrix for nccl-tests' alltoallv_perf, whose command
# line the run prints). Without a GPU the script says so and stops with status 1: nothing ran, no pass.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
build="${REDIST_GPU_BUILD:-build/gpu}"
arch="${REDIST_GPU_ARCH:-native}"
nprocs="${REDIST_MPI_TEST_NPROCS:-1 2 4 8}"
samples="${REDIST_BENCH_SAMPLES:-256}"
start=$(date +%s)

gpus=0
if command -v nvidia-smi >/dev/null &&
  nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
if [ "${gpus}" -eq 0 ]; then
  echo "tests/gpu/run.sh: NO GPU: no NVIDIA GPU is visible here (nvidia-smi missing or listing none);"
  echo "tests/gpu/run.sh: nothing was built or run, this is NOT a pass: run it on a machine with a GPU"
  exit 1
fi
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

# bench_redistribute_device: each run's "# summary:" lines go to one log for the table below.
mpiexec=(mpirun)
grep -q "Open MPI" <<<"$(mpirun --version 2>&1)" && mpiexec+=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpiexec+=(--allow-run-as-root)
redist_bench="${build}/gpu-bench-redistribute.log"
: >"${redist_bench}"
run_redist_bench() {  # <ranks> <comm> [args...]
  local np=$1 comm=$2
  shift 2
  echo "## bench_redistribute_device: ${np} ranks, --comm ${comm}"
  "${mpiexec[@]}" -np "${np}" "${build}/examples/example_bench_redistribute_device" --comm "${comm}" --check \
    --samples "${samples}" "$@" | tee -a "${redist_bench}" ||
    { echo "(failed: ${np} ranks, ${comm})"; status=1; }
}
run_redist_bench 1 nccl --iters 5 --matrix "${build}/a2av-np1-"
for np in 2 4 8; do run_redist_bench "${np}" mpi --iters 3; done
[ "${gpus}" -ge 2 ] && run_redist_bench "${gpus}" nccl --iters 5 --matrix "${build}/a2av-np${gpus}-"

echo
echo "| test | result | seconds |"
echo "| --- | --- | --- |"
sed -nE 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: ([^ ]+) \.*[ *]*([A-Za-z]+[A-Za-z ]*[A-Za-z]).* ([0-9.]+) sec$/| \1 | \2 | \3 |/p' "${log}"
grep -q "Skipped\|Not Run" "${log}" && { echo "(a skipped gpu test counts as a failure here)"; status=1; }
echo
echo "bench_device_staging (ratio = algbw / cudaMemcpyAsync D2D algbw):"
grep -E '^ +[0-9]' "${bench}" | awk '{printf "  %-8s piece %8s B: %7s GB/s, ratio %s (target %s %s), #wrong %s\n", $4, $1, $6, $9, $10, $11, $12}'
echo
echo "bench_redistribute_device (into = redistribute_into / hand-unpacked, alloc = redistribute /"
echo "hand-unpacked-alloc; by hand: pack kernel, grouped ncclSend/ncclRecv or D2H + MPI_Ialltoallv + H2D,"
echo "unpack kernel):"
echo "| comm | ranks | layout | into | alloc | target | verdict | #wrong |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
awk '$2 == "summary:" {
  printf "| %s | %s | %s | %s | %s | <= %s | %s | %s |\n", $4, $6, $8, $10, $12, $14, $15, $17 }' \
  "${redist_bench}"
grep -q "^# summary:" "${redist_bench}" || { echo "(no bench_redistribute_device result)"; status=1; }
echo "tests/gpu/run.sh: $( [ ${status} -eq 0 ] && echo passed || echo FAILED ) in $(( $(date +%s) - start )) s"
exit ${status}
