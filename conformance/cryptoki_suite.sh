#!/usr/bin/env bash
# The cryptoki crate's own published integration tests (cryptoki 0.12.1, the tests/
# directory of the crate on crates.io) run against $MODULE, the way upstream runs them
# against SoftHSM (TEST_PKCS11_MODULE; a path containing "softhsm" turns on the suite's
# SoftHSM quirks).
# Usage: [MODULE=/path/to/module.so] [SKIP_FILE=file] conformance/cryptoki_suite.sh [TEST...]
#   TEST...    run only these tests (exact names), e.g. sign_verify login_feast
#   SUITE_LIST a file that receives "name ok|FAILED|ignored" for every test run (sorted)
#   SKIP_FILE  tests left out, one "name  # reason" per line; default
#              conformance/cryptoki_suite.skip for hsmux,
#              conformance/cryptoki_suite.softhsm.skip for SoftHSM,
#              conformance/cryptoki_suite.behind.skip for SoftHSM behind hsmux
# The crate is fetched through cargo (crates.io) into a throw-away project, copied to the
# temp dir and tested there with its own Cargo.lock; nothing of it is kept in this repo.
# Build products go to target/cryptoki-suite so that later runs are incremental.
source "$(dirname "$0")/lib.sh"
# Behind hsmux the SoftHSM token exists before the suite starts (hsmux selects it by serial),
# and the suite re-initializes it with its own SO PIN (tests/common/mod.rs of the crate).
[ "$TARGET" = behind ] && SO_PIN=abcdef654321
setup
VERSION=0.12.1
command -v cargo >/dev/null || die "cargo not found"
export CARGO_TARGET_DIR="$REPO/target/cryptoki-suite"
if [ -z "${SKIP_FILE:-}" ]; then
  SKIP_FILE="$REPO/conformance/cryptoki_suite.skip"
  [ "$TARGET" = softhsm ] && SKIP_FILE="$REPO/conformance/cryptoki_suite.softhsm.skip"
  [ "$TARGET" = behind ] && SKIP_FILE="$REPO/conformance/cryptoki_suite.behind.skip"
fi
[ -f "$SKIP_FILE" ] || die "skip file $SKIP_FILE not found"

# 1. Fetch the published crate with cargo into the registry source cache.
mkdir -p "$WORK/fetch/src"
cat > "$WORK/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-cryptoki"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
cryptoki = "=$VERSION"
TOML
: > "$WORK/fetch/src/lib.rs"
out=$(cd "$WORK/fetch" && cargo fetch --quiet 2>&1) || die "cargo fetch cryptoki $VERSION" "$out"
src=""
for d in "$CARGO_HOME"/registry/src/*/cryptoki-"$VERSION"; do
  [ -d "$d/tests" ] && src=$d
done
[ -n "$src" ] || die "cryptoki $VERSION sources not found under $CARGO_HOME/registry/src"

# 2. A private copy to build and test (the registry cache is left untouched).
cp -r "$src" "$WORK/cryptoki"
cd "$WORK/cryptoki"

skips=()
nskip=0
while read -r name _; do
  case "$name" in ''|'#'*) continue ;; esac
  skips+=(--skip "$name"); nskip=$((nskip + 1))
done < "$SKIP_FILE"
note "skipping $nskip tests listed in ${SKIP_FILE#"$REPO"/}"

export TEST_PKCS11_MODULE="$MODULE"
# The shipped Cargo.lock pins the dev-dependencies; fall back to resolving if it is stale.
locked=(--locked)
cargo metadata --locked --format-version 1 >/dev/null 2>&1 || locked=()
out=$(cargo test --release "${locked[@]}" --tests --no-run 2>&1) || die "building cryptoki $VERSION tests" "$out"
ok "cryptoki $VERSION integration tests build"

# 3. Run every test binary, one test at a time (the tests share the token).
rc=0
cargo test --release "${locked[@]}" --tests --no-fail-fast -- --test-threads=1 --exact "${skips[@]}" "$@" \
  > "$WORK/suite.log" 2>&1 || rc=$?
passed=$(grep -cE '^test .* \.\.\. ok$' "$WORK/suite.log" || true)
if [ -n "${SUITE_LIST:-}" ]; then
  sed -nE 's/^test (.*) \.\.\. (ok|FAILED|ignored.*)$/\1 \2/p' "$WORK/suite.log" | sort > "$SUITE_LIST"
fi
ignored=$(grep -cE '^test .* \.\.\. ignored' "$WORK/suite.log" || true)
failed_names=$(sed -nE 's/^test (.*) \.\.\. FAILED$/\1/p' "$WORK/suite.log")
grep -E '^(test result:|     Running )' "$WORK/suite.log" | sed 's/^/    /'
PASSED=$((PASSED + passed))
if [ -n "$failed_names" ]; then
  while read -r t; do
    # The panic message of each failed test, from libtest's "---- name stdout ----" block.
    not_ok "cryptoki::$t" "$(awk -v t="---- $t stdout ----" '$0 == t {on = 1; next} /^---- / {on = 0} /^failures:$/ {on = 0} on' "$WORK/suite.log" | head -n 12)"
  done <<<"$failed_names"
elif [ "$rc" -ne 0 ]; then
  not_ok "cargo test exited $rc" "$(tail -n 40 "$WORK/suite.log")"
fi
note "cryptoki $VERSION suite on $TARGET: $passed passed, $(grep -c . <<<"$failed_names" || true) failed, $ignored ignored upstream, $nskip skipped here"
