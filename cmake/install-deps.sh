#!/usr/bin/env bash
# Installs what redist's builds and tests need on a Debian 12 machine (cmake, g++, clang 14, ninja, OpenMPI,
# doctest, clang-format 14, libtorch for the PyTorch adapter, headless Chromium for the plan picture's test,
# libFuzzer's runtime for the fuzz targets, valgrind for the memcheck run). Idempotent: when everything is
# installed it says so and exits at once.
# Needs root only when something is missing. CUDA/NCCL are optional and not installed here.
set -euo pipefail

packages=(
  cmake ninja-build g++ clang-14 clang-format-14 # toolchains (g++ brings libasan for the gcc preset)
  libclang-rt-14-dev                             # libFuzzer, ASan and UBSan for clang: the fuzz targets
  valgrind                                       # memcheck of an MPI test at 2 ranks
  libopenmpi-dev openmpi-bin                     # the MPI backend and mpirun for the MPI tests and examples
  doctest-dev                                    # the test framework (doctestConfig.cmake)
  libtorch-dev                                   # at::Tensor for redist/adapters/torch.hpp (CPU build)
  chromium python3                               # renders the plan's SVG to a PNG; checks the SVG and PNG
)

missing=()
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null || true)
for p in "${packages[@]}"; do
  grep -qx "${p} ii *" <<<"${installed}" || missing+=("${p}")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: installing needs root; run as root (or: sudo bash cmake/install-deps.sh)," >&2
  echo "  or: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done"
