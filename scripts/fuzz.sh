#!/usr/bin/env bash
# Fuzzing hsmux with cargo-fuzz (libFuzzer + AddressSanitizer); the targets are in fuzz/
# (see fuzz/README.md).
#
#   scripts/fuzz.sh smoke [SECONDS]       the test command's short run: every regression
#                                         reproducer once, then each target SECONDS
#                                         (default 40) from its corpus
#   scripts/fuzz.sh long [SECONDS]        the long run: each target SECONDS (default 3600)
#   scripts/fuzz.sh run TARGET [SECONDS] [libFuzzer args...]
#                                         one target (default 600 s)
#   scripts/fuzz.sh build                 build the targets only
#
# Environment: FUZZ_TARGETS (default "c_abi config soft_store remote_answers"),
# FUZZ_FORKS=N to run N libFuzzer worker processes per target (-fork=N; default 1, the
# machine is shared), HSMUX_FUZZ_NO_HUGE / HSMUX_FUZZ_STRICT (c_abi, see its header).
#
# Prints per target the executions, executions per second and crashes; exits non-zero
# when a reproducer or a run crashed. New crash inputs land in fuzz/artifacts/<target>/;
# a minimized one belongs in fuzz/regressions/<target>/ (fuzz/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:-smoke}
targets=${FUZZ_TARGETS:-c_abi config soft_store remote_answers}
forks=${FUZZ_FORKS:-1}
bin_dir=$root/fuzz/target/x86_64-unknown-linux-gnu/release

need() {
  if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal || return 1
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz || return 1
  fi
}

build() {
  local t0=$SECONDS
  # Release with debug assertions and overflow checks (cargo-fuzz's default), ASan.
  (cd fuzz && cargo +nightly fuzz build) || { echo "fuzz: build failed"; return 1; }
  echo "fuzz: build took $((SECONDS - t0)) s"
}

# The options every run gets: no leak detection (the module keeps its instance for the
# life of the process on purpose), a per-input timeout, enough memory for a soft token.
common=(-detect_leaks=0 -timeout=60 -rss_limit_mb=4096 -print_final_stats=1)

max_len() {
  case $1 in
    c_abi) echo 16384 ;;
    *) echo 65536 ;;
  esac
}

# c_abi's inputs are structures: full length from the start.
extra() {
  case $1 in
    c_abi) echo -len_control=0 ;;
  esac
}

failed=0
summary=()

# Runs every reproducer of one target once; a crash fails the run.
regressions() {
  local t=$1 dir=$root/fuzz/regressions/$1
  [ -d "$dir" ] || return 0
  local files=("$dir"/*)
  [ -e "${files[0]}" ] || return 0
  local inputs=() f
  for f in "${files[@]}"; do
    case "$f" in *.md|*.txt) continue ;; esac
    [ -f "$f" ] && inputs+=("$f")
  done
  [ "${#inputs[@]}" -gt 0 ] || return 0
  local bad=0 log=$root/fuzz/artifacts/$t.regression.log
  # All at once (one start-up); only when that fails, each alone to name the ones that crash.
  if ! "$bin_dir/$t" "${common[@]}" -runs=1 "${inputs[@]}" >"$log" 2>&1; then
    for f in "${inputs[@]}"; do
      if ! "$bin_dir/$t" "${common[@]}" -runs=1 "$f" >"$log.one" 2>&1; then
        echo "fuzz: $t: reproducer ${f#$root/} crashes"
        bad=$((bad + 1))
      fi
    done
  fi
  files=("${inputs[@]}")
  summary+=("$t: regressions: ${#files[@]} reproducer(s), $bad crash(es)")
  [ "$bad" -eq 0 ] || failed=1
}

# Fuzzes one target for $2 seconds; extra args go to libFuzzer.
fuzz_one() {
  local t=$1 secs=$2; shift 2
  local corpus=$root/fuzz/corpus/$t art=$root/fuzz/artifacts/$t
  mkdir -p "$corpus" "$art"
  local log=$root/fuzz/artifacts/$t.log
  local before
  before=$(ls "$art" 2>/dev/null | grep -cE '^(crash|oom|timeout|leak)-' || true)
  local fork=()
  [ "$forks" -gt 1 ] && fork=(-fork="$forks" -ignore_crashes=0)
  echo "=== fuzz $t for ${secs}s (log: fuzz/artifacts/$t.log)"
  "$bin_dir/$t" "${common[@]}" "${fork[@]}" -max_total_time="$secs" -max_len="$(max_len "$t")" \
    -artifact_prefix="$art/" $(extra "$t") "$@" "$corpus" >"$log" 2>&1
  local rc=$?
  local execs rate after
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{s += $2} END {print s + 0}')
  if [ "$execs" = 0 ]; then
    # -fork mode prints its totals on its status lines instead.
    execs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')
    execs=${execs:-0}
    rate=$((execs / (secs > 0 ? secs : 1)))
  fi
  after=$(ls "$art" 2>/dev/null | grep -cE '^(crash|oom|timeout|leak)-' || true)
  local crashes=$((after - before))
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
  summary+=("$t: $execs executions, $rate exec/s, $crashes crash(es)")
  if [ "$crashes" -ne 0 ]; then
    failed=1
    echo "fuzz: $t crashed; the end of its log:"
    grep -E 'ERROR: |SUMMARY: |panicked at|Test unit written to|deadly signal' "$log" | head -8
  fi
}

case $mode in
  build)
    need && build
    exit $?
    ;;
  smoke)
    secs=${2:-40}
    need && build || exit 1
    for t in $targets; do mkdir -p fuzz/artifacts/$t; regressions "$t"; done
    for t in $targets; do fuzz_one "$t" "$secs"; done
    ;;
  long)
    secs=${2:-3600}
    need && build || exit 1
    for t in $targets; do fuzz_one "$t" "$secs"; done
    ;;
  run)
    t=${2:?usage: fuzz.sh run TARGET [SECONDS] [libFuzzer args...]}
    secs=${3:-600}
    shift $(($# < 3 ? $# : 3))
    need && build || exit 1
    mkdir -p fuzz/artifacts/$t
    regressions "$t"
    fuzz_one "$t" "$secs" "$@"
    ;;
  *)
    sed -n '2,22p' "$0"
    exit 2
    ;;
esac

echo
for s in "${summary[@]}"; do echo "fuzz: $s"; done
[ "$failed" -eq 0 ]
