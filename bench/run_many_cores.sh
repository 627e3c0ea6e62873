#!/usr/bin/env bash
# Runs every MPI benchmark of examples/ at 2, 4, 8 and 16 ranks, a core per rank, and prints one table of
# the ratios they claim (the library's time over the hand-written code's, both measured in the same run):
# each benchmark prints one "ratio <benchmark> <case> <value>" line per ratio. Rank counts above the
# machine's cores are skipped, not oversubscribed: their timings would measure the scheduler.
#
#   bench/run_many_cores.sh [BUILD_DIR]      a Release build of the benchmarks (made there if missing)
#   REDIST_BENCH_RANKS="2 4 8" bench/run_many_cores.sh    other rank counts
#   REDIST_BENCH_QUICK=1 bench/run_many_cores.sh          each benchmark's --quick configuration
# Each run's full output is kept in BUILD_DIR/many_cores/<benchmark>.np<N>.log.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build/many-cores}
ranks=${REDIST_BENCH_RANKS:-"2 4 8 16"}
cores=$(nproc)
benchmarks="bench_redistribute bench_seqpar bench_shard bench_shard_large bench_dispatch bench_grouped"
program() { if [ "$1" = bench_shard_large ]; then echo bench_shard; else echo "$1"; fi; }

if [ ! -x "$build/examples/example_bench_redistribute" ]; then
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DREDIST_BUILD_TESTS=OFF \
    -DREDIST_ENABLE_CUDA=OFF -DREDIST_ENABLE_TORCH=OFF > "$build.configure.log"
  for b in $benchmarks; do cmake --build "$build" --target "example_$(program "$b")" -j "$cores"; done
fi

# Arguments per benchmark: batches as large as real ones (hundreds of MB per call), every result checked.
args() {
  if [ "${REDIST_BENCH_QUICK:-0}" = 1 ]; then
    if [ "$1" = bench_shard_large ]; then echo "--large --quick --check"; else echo "--quick --check"; fi
    return
  fi
  case $1 in
    bench_redistribute) echo "--check" ;;
    bench_seqpar) echo "--sizes 0.0625,1,16,64" ;;
    bench_shard) echo "--check" ;;
    bench_shard_large) echo "--large --check" ;;
    bench_dispatch) echo "--check" ;;
    bench_grouped) echo "" ;;
  esac
}

launcher=(mpirun --bind-to core --map-by core)
if [ "$(id -u)" = 0 ]; then launcher+=(--allow-run-as-root); fi

logs=$build/many_cores
mkdir -p "$logs"
table=$logs/ratios.tsv
: > "$table"
ran=""
for np in $ranks; do
  if [ "$np" -gt "$cores" ]; then
    echo "run_many_cores: skipping $np ranks: this machine has $cores cores" >&2
    continue
  fi
  ran="$ran $np"
  for b in $benchmarks; do
    log=$logs/$b.np$np.log
    echo "run_many_cores: $b at $np ranks" >&2
    # shellcheck disable=SC2046
    if ! "${launcher[@]}" -np "$np" "$build/examples/example_$(program "$b")" $(args "$b") > "$log" 2>&1; then
      echo "run_many_cores: $b at $np ranks failed, see $log" >&2
      echo "$b failed - $np" >> "$table"
      continue
    fi
    awk -v np="$np" '$1 == "ratio" { print $2, $3, np, $4 }' "$log" >> "$table"
  done
done

# One row per (benchmark, case), one column per rank count.
echo "# ratios: library time / hand-written time, the same bytes, both measured in one run"
echo "# machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
awk -v ranks="$ran" '
  BEGIN { n = split(ranks, r, " "); printf "%-20s %-48s", "benchmark", "case"; for (i = 1; i <= n; i++) printf " %8s", r[i] " ranks"; print "" }
  { key = $1 " " $2; if (!(key in seen)) { seen[key] = 1; order[++k] = key } v[key, $3] = $4 }
  END { for (j = 1; j <= k; j++) { split(order[j], f, " "); printf "%-20s %-48s", f[1], f[2]
          for (i = 1; i <= n; i++) printf " %8s", ((order[j], r[i]) in v) ? v[order[j], r[i]] : "-"; print "" } }
' "$table"
