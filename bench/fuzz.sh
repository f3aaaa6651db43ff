#!/usr/bin/env bash
# bench/fuzz.sh — build the libFuzzer harnesses of tests/fuzz (clang,
# PETREL_FUZZ=ON, ASan + UBSan) into build-fuzz/ and run each one on a copy
# of its checked-in corpus.
#
#   bench/fuzz.sh                    every harness for $SECONDS s (default 600)
#   bench/fuzz.sh --ci               every harness for 20 s (SECONDS overrides)
#   bench/fuzz.sh decoder topic      only these harnesses
#   SECONDS=120 bench/fuzz.sh        two minutes each
#   MERGE=1 bench/fuzz.sh            merge new interesting inputs back into
#                                    tests/fuzz/corpus/<harness>/ (-merge=1)
#
# Other settings (environment): BUILD_DIR (build-fuzz), WORK_DIR
# ($BUILD_DIR/fuzz-work, wiped per harness), CRASH_DIR ($BUILD_DIR/fuzz-crashes),
# JOBS (2, for the build), NO_BUILD=1 (use the binaries as they are).
#
# Prints one line per harness: runs, exec/s, corpus size, crashes (0 or the
# crash file). Exits 1 if any harness crashed (the crash file and the log
# with the stack trace are named), 2 on a build or usage error.
set -u -o pipefail

# Bash's own SECONDS counts up from the value it inherited, so read the
# environment for what the caller set.
requested_seconds=$(printenv SECONDS || true)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

BUILD_DIR=${BUILD_DIR:-build-fuzz}
WORK_DIR=${WORK_DIR:-$BUILD_DIR/fuzz-work}
CRASH_DIR=${CRASH_DIR:-$BUILD_DIR/fuzz-crashes}
JOBS=${JOBS:-2}
MERGE=${MERGE:-0}

# harness -> -max_len
declare -A MAX_LEN=(
  [decoder]=4096
  [properties]=1024
  [topic]=1024
  [records]=1024
  [config]=8192
  [acl]=2048
  [password]=2048
  [websocket]=4096
)
ALL=(decoder properties topic records config acl password websocket)

duration=600
ci=0
harnesses=()
for arg in "$@"; do
  case "$arg" in
    --ci) ci=1; duration=20 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $arg" >&2; exit 2 ;;
    *)
      if [[ -z "${MAX_LEN[$arg]+x}" ]]; then
        echo "fuzz.sh: unknown harness '$arg' (${ALL[*]})" >&2
        exit 2
      fi
      harnesses+=("$arg") ;;
  esac
done
[[ ${#harnesses[@]} -eq 0 ]] && harnesses=("${ALL[@]}")
if [[ -n "$requested_seconds" ]]; then
  if ! [[ "$requested_seconds" =~ ^[0-9]+$ ]] || (( requested_seconds < 1 )); then
    echo "fuzz.sh: SECONDS must be a positive integer" >&2
    exit 2
  fi
  duration=$requested_seconds
fi

# --- build -------------------------------------------------------------------
if [[ "${NO_BUILD:-0}" != 1 ]]; then
  if ! command -v clang++ >/dev/null; then
    echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2
    exit 2
  fi
  t0=$(date +%s)
  cmake -S . -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPETREL_FUZZ=ON \
    -DPETREL_TESTS=OFF -DPETREL_BENCH=OFF >"$BUILD_DIR.configure.log" 2>&1 \
    || { cat "$BUILD_DIR.configure.log" >&2; echo "fuzz.sh: cmake failed" >&2; exit 2; }
  rm -f "$BUILD_DIR.configure.log"
  targets=()
  for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
  cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]}" \
    || { echo "fuzz.sh: build failed" >&2; exit 2; }
  echo "fuzz.sh: built ${targets[*]} in $(( $(date +%s) - t0 )) s"
fi

# --- run ---------------------------------------------------------------------
mkdir -p "$WORK_DIR" "$CRASH_DIR"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "fuzz.sh: ${duration} s per harness; crash files go to $CRASH_DIR/"
printf '%-11s %12s %9s %8s %s\n' harness runs exec/s corpus crashes
failed=0
for h in "${harnesses[@]}"; do
  bin="$BUILD_DIR/tests/fuzz/fuzz_$h"
  seeds="tests/fuzz/corpus/$h"
  work="$WORK_DIR/$h"
  log="$WORK_DIR/$h.log"
  if [[ ! -x "$bin" ]]; then
    echo "fuzz.sh: $bin missing" >&2
    exit 2
  fi
  rm -rf "$work"
  mkdir -p "$work"
  [[ -d "$seeds" ]] && cp -- "$seeds"/* "$work"/ 2>/dev/null
  # Artifacts (crash-*, leak-*, timeout-*, oom-*) from an earlier run of this
  # harness stay; only new ones count.
  before=$(ls "$CRASH_DIR" | grep -c "^$h-" || true)

  "$bin" "$work" -max_total_time="$duration" -max_len="${MAX_LEN[$h]}" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$CRASH_DIR/$h-" >"$log" 2>&1
  rc=$?

  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$work" -type f | wc -l)
  crash=$(ls -t "$CRASH_DIR" | grep "^$h-" | head -1 || true)
  after=$(ls "$CRASH_DIR" | grep -c "^$h-" || true)
  if (( rc != 0 )) || (( after > before )); then
    failed=1
    if (( after > before )); then
      result="$CRASH_DIR/$crash"
    else
      result="exit status $rc, no crash file"
    fi
  else
    result=0
  fi
  printf '%-11s %12s %9s %8s %s\n' "$h" "${runs:-?}" "${eps:-?}" "$corpus" "$result"
  if [[ "$result" != 0 ]]; then
    echo "---- $h: log $log (stack trace below) ----"
    grep -n -m1 -E "ERROR: |runtime error|==ERROR|deadly signal" "$log" >/dev/null &&
      sed -n '/ERROR: \|runtime error\|deadly signal/,/SUMMARY/p' "$log" | head -60
    echo "---- reproduce: $bin $result"
  fi

  if [[ "$MERGE" == 1 ]]; then
    mkdir -p "$seeds"
    n0=$(find "$seeds" -type f | wc -l)
    "$bin" -merge=1 -max_len="${MAX_LEN[$h]}" "$seeds" "$work" >"$WORK_DIR/$h.merge.log" 2>&1 ||
      echo "fuzz.sh: merge of $h failed, see $WORK_DIR/$h.merge.log" >&2
    echo "            merged into $seeds: $n0 -> $(find "$seeds" -type f | wc -l) files"
  fi
done

if (( failed )); then
  echo "fuzz.sh: FAILED (crash files in $CRASH_DIR/)"
  exit 1
fi
echo "fuzz.sh: no crashes"
