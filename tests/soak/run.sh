#!/usr/bin/env bash
# The full soak of redistribute(): 10,000 seeded layouts (by default) spread over 1 to 8 ranks, from an
# optimized build, each mpirun bounded in time. Not part of CTest's default set (its slice is).
#
#   tests/soak/run.sh [build-dir]        (default build/soak-rel, configured as Release if it does not exist)
#
# Environment: SOAK_SEED (default 1), SOAK_LAYOUTS (in all, default 10000), SOAK_RANKS (default "1 2 3 4 5 6 7
# 8"), SOAK_TIMEOUT (seconds per mpirun, default 1800), SOAK_MPIRUN (default mpirun), SOAK_JOBS (build jobs,
# default 2), CXX (the compiler of a new build dir, default g++). Rank count k runs
# layouts of its own: the j-th count in SOAK_RANKS runs layouts j*share .. (j+1)*share-1, so every layout
# index is drawn once. A failure prints the command that repeats its layout; the script exits non-zero when
# any run fails or runs past its timeout (a hang), and prints each run's summary line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_dir="$(cd "${here}/../.." && pwd)"
build_dir="${1:-${source_dir}/build/soak-rel}"
seed="${SOAK_SEED:-1}"
total="${SOAK_LAYOUTS:-10000}"
read -r -a ranks <<<"${SOAK_RANKS:-1 2 3 4 5 6 7 8}"
limit="${SOAK_TIMEOUT:-1800}"
mpirun="${SOAK_MPIRUN:-mpirun}"

if [[ ! -f "${build_dir}/CMakeCache.txt" ]]; then
  cmake -S "${source_dir}" -B "${build_dir}" -G Ninja -DCMAKE_CXX_COMPILER="${CXX:-g++}" \
    -DCMAKE_BUILD_TYPE=Release -DREDIST_ENABLE_CUDA=OFF -DREDIST_ENABLE_TORCH=OFF -DREDIST_STATIC_CHECKS=OFF
fi
cmake --build "${build_dir}" --target soak_redistribute -j "${SOAK_JOBS:-2}"
exe="${build_dir}/tests/soak/soak_redistribute"

launch=("${mpirun}")
if "${mpirun}" --version 2>&1 | grep -q "Open MPI\|OpenRTE"; then
  launch+=(--oversubscribe)  # more ranks than cores is the point of the larger runs
  [[ "$(id -u)" == 0 ]] && launch+=(--allow-run-as-root)
fi

share=$(((total + ${#ranks[@]} - 1) / ${#ranks[@]}))
status=0
summaries=()
start=${SECONDS}
for j in "${!ranks[@]}"; do
  np=${ranks[$j]}
  first=$((j * share))
  count=$((first + share > total ? total - first : share))
  ((count > 0)) || continue
  echo "soak: ${count} layouts from ${first} of seed ${seed} at ${np} ranks (timeout ${limit} s)"
  log="$(mktemp)"
  rc=0
  timeout --signal=TERM --kill-after=30 "${limit}" "${launch[@]}" -np "${np}" "${exe}" --seed "${seed}" \
    --first "${first}" --layouts "${count}" --progress 500 2>&1 | tee "${log}" || rc=${PIPESTATUS[0]}
  if ((rc == 124 || rc == 137)); then
    summaries+=("soak: ${np} ranks: TIMED OUT after ${limit} s in layouts ${first}.. of seed ${seed}")
    status=1
  elif ((rc != 0)); then
    line="$(grep '^soak: [0-9]* layouts' "${log}" || true)"
    summaries+=("${line:-soak: ${np} ranks: exit ${rc}, no summary}")
    status=1
  else
    summaries+=("$(grep '^soak: [0-9]* layouts' "${log}")")
  fi
  rm -f "${log}"
done

echo
printf '%s\n' "${summaries[@]}"
verdict="all byte-exact"
((status == 0)) || verdict="FAILED"
echo "soak: ${total} layouts at ${ranks[*]} ranks in $((SECONDS - start)) s: ${verdict}"
exit "${status}"
