#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS_PER_TARGET]
#
# Configures and builds the libFuzzer targets with clang (a separate build in
# $HOLDFAST_BUILD/fuzz, or build/fuzz), then runs each target for
# SECONDS_PER_TARGET (default 20) on a copy of its seed corpus, so the source
# tree is never written. Exits nonzero if any target finds a crash, a leak, a
# timeout or a sanitizer report; the reproducer is kept in the build tree and
# its path printed.
set -euo pipefail

seconds=${1:-20}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${HOLDFAST_BUILD:-$root/build}/fuzz
cxx=${HOLDFAST_FUZZ_CXX:-clang++}
jobs=${HOLDFAST_FUZZ_JOBS:-2}
targets=(fuzz_envelope fuzz_client_frame fuzz_device_cert fuzz_client_state fuzz_hpke fuzz_policy
  fuzz_config fuzz_export_package)

log() { printf '==> %s\n' "$*" >&2; }

command -v "$cxx" >/dev/null || { echo "error: $cxx not found (apt-get install clang)" >&2; exit 1; }

log "building fuzzers in $build"
mkdir -p "$build"
if ! cmake -S "$here" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" >"$build/configure.log" 2>&1; then
  tail -n 40 "$build/configure.log" >&2
  log "configuring the fuzz build failed; full log in $build/configure.log"
  exit 1
fi

run_dir=$build/run
rm -rf "$run_dir"
mkdir -p "$run_dir"
failed=()
for t in "${targets[@]}"; do
  # One target at a time, so a module that does not build fails its own
  # fuzzer only and the others still run.
  if ! cmake --build "$build" -j"$jobs" --target "$t" >"$build/build-$t.log" 2>&1; then
    failed+=("$t")
    grep -E 'error' "$build/build-$t.log" | head -n 20 >&2 || true
    log "$t does not build; full log in $build/build-$t.log"
    continue
  fi
  work=$run_dir/$t
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -R "$here/corpus/$t/." "$work/corpus/"
  dict=()
  case $t in fuzz_policy|fuzz_config) dict=(-dict="$here/yaml.dict") ;; esac
  log "$t for ${seconds}s"
  # Leaks and UBSan are fatal; a single input may take at most 10 s.
  if ASAN_OPTIONS=detect_leaks=1:symbolize=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$work/artifacts/" "${dict[@]}" \
       "$work/corpus" >"$work/log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/log" |
      sed "s/^/    /" >&2 || true
  else
    failed+=("$t")
    log "$t FAILED; last lines of $work/log:"
    tail -n 60 "$work/log" >&2
    ls "$work/artifacts" | sed "s|^|    reproducer: $work/artifacts/|" >&2
  fi
done

if ((${#failed[@]})); then
  log "fuzzers that failed: ${failed[*]}"
  exit 1
fi
log "all ${#targets[@]} fuzzers ran ${seconds}s without a finding"
