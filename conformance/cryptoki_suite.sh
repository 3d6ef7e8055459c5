#!/usr/bin/env bash
# The cryptoki crate's own published integration tests (v0.12.1, its tests/ directory)
# run against libhsmux.so, as they run against SoftHSM upstream. The tests listed in
# conformance/cryptoki_suite.skip (with the reason on each line) are left out.
source "$(dirname "$0")/lib.sh"
VERSION=0.12.1
CARGO_HOME=${CARGO_HOME:-$HOME_REAL/.cargo}
export CARGO_TARGET_DIR="$REPO/target/cryptoki-suite"

# Fetch the published crate through cargo (registry cache), then test a copy of it.
mkdir -p "$WORK/fetch/src"
cat > "$WORK/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-cryptoki"
version = "0.0.0"
edition = "2021"
[dependencies]
cryptoki = "=$VERSION"
TOML
touch "$WORK/fetch/src/lib.rs"
(cd "$WORK/fetch" && cargo fetch --quiet)
src=$(ls -d "$CARGO_HOME"/registry/src/*/cryptoki-$VERSION | head -n 1)
[ -d "$src/tests" ] || fail "cryptoki $VERSION sources not found under $CARGO_HOME"
cp -r "$src" "$WORK/cryptoki"
# Run against the lock file of hsmux's own build where possible (no network surprises).
skips=()
while read -r name _; do
  [ -n "$name" ] && [ "${name:0:1}" != "#" ] && skips+=(--skip "$name")
done < "$REPO/conformance/cryptoki_suite.skip"

export TEST_PKCS11_MODULE="$MODULE"
cd "$WORK/cryptoki"
out=$(cargo test --release --quiet --tests -- --test-threads=1 "${skips[@]}" 2>&1) || { echo "$out" | tail -80; fail "cryptoki suite failed"; }
echo "$out" | grep -E "^test result:" 
echo "cryptoki $VERSION integration tests pass against hsmux (skips: conformance/cryptoki_suite.skip)"
