#!/usr/bin/env bash
# Groups c_abi (or other) crash inputs by where they fail: for each file, the error kind,
# the first frame in hsmux's src/ and, for c_abi, the call being made (HSMUX_FUZZ_TRACE).
#   fuzz/triage.sh TARGET FILE...
set -uo pipefail
t=$1; shift
bin=$(dirname "$0")/target/x86_64-unknown-linux-gnu/release/$t
for f in "$@"; do
  out=$(HSMUX_FUZZ_TRACE=1 RUST_BACKTRACE=1 "$bin" -detect_leaks=0 -runs=1 "$f" 2>&1)
  kind=$(grep -m1 -oE 'ERROR: AddressSanitizer: [a-z-]+|panicked at [^ ]+|unsafe precondition\(s\) violated: [a-z_:]+|memory allocation of [0-9]+ bytes failed|ERROR: libFuzzer: [a-z-]+|SEGV' <<<"$out" | head -1)
  frame=$(grep -oE "/work/[^ ]*/src/[a-z_/]+\.rs:[0-9]+" <<<"$out" | grep -v fuzz_targets | sed "s#.*/src/#src/#" | awk "!seen[\$0]++" | head -3 | paste -sd "<" -)
  op=$(grep -E '^[A-Z][A-Za-z]+ \{|^[A-Z][A-Za-z]+$' <<<"$out" | tail -1 | cut -c1-400)
  call=$(grep -E '^    C_[A-Za-z]+ -> ' <<<"$out" | tail -1)
  echo "$(basename "$f") | ${kind:-no crash} | ${frame:-?} | last ok call: ${call# *} | op: $op"
done
