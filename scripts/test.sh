#!/usr/bin/env bash
# Runs every test of hsmux: formatting and clippy lints, unit tests, the Rust conformance
# tests (cryptoki loading the built module), and the consumer tests in conformance/
# (pkcs11-tool, p11-kit, OpenSSL, Java, the cryptoki crate's own suite). Installs what it
# needs first. Ends with a line "N passed, N failed" and a non-zero exit when anything
# failed.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh || { echo "deps: installation failed"; exit 1; }

passed=0
failed=0
failures=()
step() { # name, command...
  local name=$1; shift
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1)); echo "--- ok: $name"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "--- FAILED: $name"
  fi
}

step "cargo fmt --check" cargo fmt --check
step "cargo build --release" cargo build --release --quiet
# After the release build: clippy in the release profile reuses its build-script runs
# (aws-lc's C build) instead of starting them again.
step "cargo clippy --all-targets -D warnings" cargo clippy --release --quiet --all-targets -- -D warnings
# The test output is kept so that the summary at the end can name the failing tests (CI
# shows the tail of the output only). --no-fail-fast: every test binary runs.
cargo_log=$(mktemp -t hsmux-cargo-test.XXXXXX)
cargo_test() { cargo test --release --quiet --no-fail-fast 2>&1 | tee "$cargo_log"; }
step "cargo test --release (unit + conformance)" cargo_test
# Fuzzing: every regression reproducer once, then each target briefly (fuzz/README.md;
# the long run is scripts/fuzz.sh long).
step "fuzz smoke (scripts/fuzz.sh smoke)" ./scripts/fuzz.sh smoke
for t in conformance/*.sh softhsm-compat/*.sh; do
  case "$t" in */lib.sh) continue ;; esac
  step "$t" bash "$t"
done

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
if grep -qE '^test .* FAILED$|panicked at' "$cargo_log"; then
  echo "failing Rust tests:"
  grep -E '^test .* FAILED$|panicked at|^---- ' "$cargo_log" | head -40
fi
rm -f "$cargo_log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
