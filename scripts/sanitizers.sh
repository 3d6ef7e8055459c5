#!/usr/bin/env bash
# Runs the C-ABI tests under AddressSanitizer and the multi-threaded tests under
# ThreadSanitizer (issue 17), with the nightly toolchain and an instrumented standard
# library (-Zbuild-std). Each sanitizer has its own target dir (target/asan, target/tsan):
# the first run compiles every dependency and std with the sanitizer, which takes long on
# a small machine (see docs/security.md); later runs only rebuild hsmux.
#
#   scripts/sanitizers.sh [asan|tsan|all]      (default: all)
#   ASAN_TESTS="bad_input semantics crypto softhsm_compat lifecycle" TSAN_TESTS="lifecycle multi_process semantics"
#
# Prints one line per test binary and a summary "sanitizers: N test binaries, N tests
# passed, N failed, N sanitizer reports"; exits non-zero on a failure or a report. The full
# logs are kept under target/<sanitizer>/logs/.
#
# What is not instrumented: C code (aws-lc inside aws-lc-sys, SoftHSMv2 loaded by the
# module tests); ASan still checks every access hsmux's Rust code makes, TSan sees the
# pthread calls of the C code. Suppressions, each with its reason, are in
# scripts/sanitizers/*.supp.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
which=${1:-all}
target=x86_64-unknown-linux-gnu
ASAN_TESTS=${ASAN_TESTS:-"bad_input semantics crypto softhsm_compat lifecycle"}
TSAN_TESTS=${TSAN_TESTS:-"lifecycle multi_process semantics"}

if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src --toolchain nightly || {
    echo "sanitizers: the nightly toolchain needs rust-src (rustup component add rust-src --toolchain nightly)"
    exit 1
  }
fi

# bad_input runs SoftHSMv2 directly in child processes to record where SoftHSM crashes;
# those crashes are SoftHSM's, and its children are skipped under a sanitizer.
export HSMUX_BAD_INPUT_NO_DIRECT=1

binaries=0
passed=0
failed=0
reports=0

run() { # sanitizer, target dir name, test names...
  local san=$1 name=$2; shift 2
  local dir=target/$name logs=target/$name/logs
  mkdir -p "$logs"
  local flags="-Zsanitizer=$san -Cforce-frame-pointers=yes -Cdebuginfo=1"
  local start=$(date +%s)
  echo "=== $name: building (cargo +nightly, -Zbuild-std, $dir)"
  # The cdylib the tests dlopen and the test binaries, one instrumented build (with the
  # tests, so that the dev-dependencies' features are those `cargo rustc --test` uses).
  local tests=()
  for t in "$@"; do tests+=(--test "$t"); done
  if ! RUSTFLAGS="$flags" RUSTDOCFLAGS="$flags" cargo +nightly build -Zbuild-std \
      --target $target --target-dir "$dir" --lib "${tests[@]}" >"$logs/build.log" 2>&1; then
    echo "--- $name: build FAILED (tail of $logs/build.log):"
    tail -20 "$logs/build.log"
    failed=$((failed + 1))
    return
  fi
  echo "--- $name: built in $(( $(date +%s) - start ))s"
  for t in "$@"; do
    local log="$logs/$t.log"
    local t0=$(date +%s)
    # The test binary dlopens libhsmux.so, whose sanitizer calls resolve against the
    # runtime linked into the executable: it must export those symbols. `cargo rustc`
    # gives the link flag to the test binary alone (RUSTFLAGS would rebuild everything).
    local exe
    exe=$(RUSTFLAGS="$flags" RUSTDOCFLAGS="$flags" cargo +nightly rustc -Zbuild-std \
      --target $target --target-dir "$dir" --test "$t" --message-format=json \
      -- -Clink-arg=-Wl,--export-dynamic 2>>"$logs/build.log" |
      grep '"kind":\["test"\]' | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
    if [ -z "$exe" ]; then
      echo "$name $t: build FAILED (see $logs/build.log)"
      failed=$((failed + 1))
      continue
    fi
    "$exe" --test-threads=4 >"$log" 2>&1
    local rv=$?
    local ok fail rep
    ok=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
    fail=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
    rep=$(grep -cE '^(==[0-9]+==ERROR: AddressSanitizer|==[0-9]+==ERROR: LeakSanitizer|WARNING: ThreadSanitizer|SUMMARY: (Address|Thread|Leak)Sanitizer)' "$log")
    # One report prints an ERROR/WARNING line and a SUMMARY line.
    rep=$(( (rep + 1) / 2 ))
    binaries=$((binaries + 1))
    passed=$((passed + ok))
    failed=$((failed + fail + (rv != 0 && fail == 0 ? 1 : 0)))
    reports=$((reports + rep))
    echo "$name $t: exit $rv, $ok passed, $fail failed, $rep reports, $(( $(date +%s) - t0 ))s ($log)"
  done
}

case $which in
  asan | all)
    export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:detect_odr_violation=0:halt_on_error=0"
    export LSAN_OPTIONS="suppressions=$root/scripts/sanitizers/lsan.supp:print_suppressions=0"
    run address asan $ASAN_TESTS
    unset ASAN_OPTIONS LSAN_OPTIONS
    ;;
esac
case $which in
  tsan | all)
    export TSAN_OPTIONS="suppressions=$root/scripts/sanitizers/tsan.supp:halt_on_error=0:second_deadlock_stack=1"
    run thread tsan $TSAN_TESTS
    unset TSAN_OPTIONS
    ;;
esac

echo "sanitizers: $binaries test binaries, $passed tests passed, $failed failed, $reports sanitizer reports"
[ "$failed" -eq 0 ] && [ "$reports" -eq 0 ]
