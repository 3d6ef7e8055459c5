#!/usr/bin/env bash
# Smoke test of the fault-injecting PKCS#11 wrapper (faultwrap.c), without hsmux: builds
# it, makes SoftHSM tokens r1 and r2 in a temp dir, and drives the wrapper with pkcs11-tool
# (configuration from FAULTWRAP_ARGS) through every mode of its ctl file:
#   ok     -L lists r1; an EC key pair; ECDSA sign + verify; `--test` and `-O` print the
#          same as on SoftHSM directly
#   error  -L fails with CKR_DEVICE_ERROR
#   gone   -L fails with CKR_DEVICE_REMOVED, -T finds no slots
#   pin    --login fails with CKR_PIN_INCORRECT, <ctl>.logins says 1
#   removed -L fails with CKR_DEVICE_REMOVED (its stickiness until a re-initialisation, and
#          max_sessions=N, are tested by tests/session_pool.rs: they need one process)
#   hang   -L blocks (still running after 1 s), finishes within 2 s once ctl says ok
#   a deleted ctl file means ok again
# then replicas_client.c: two copies of the library in one process (pReserved config),
# each on its own token and ctl file, modes changed under 4 threads of load.
# Not run by CI (it lives outside conformance/*.sh); run it by hand:
#   conformance/faultwrap/smoke.sh
# Prints ok / not ok lines and "N passed, N failed"; exit status 1 on a failure.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TARGET_LIB=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
SO_PIN=12345678
PIN=1234
PASSED=0
FAILED=0
PIDS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/faultwrap-smoke.XXXXXX")

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

ok() { PASSED=$((PASSED + 1)); echo "ok - $1"; }
not_ok() {
  FAILED=$((FAILED + 1))
  echo "not ok - $1"
  [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/    /'
}
finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit
}
die() { not_ok "$@"; finish; }

for tool in cc softhsm2-util pkcs11-tool nm; do
  command -v "$tool" >/dev/null || die "$tool not installed"
done
[ -f "$TARGET_LIB" ] || die "SoftHSMv2 not installed ($TARGET_LIB)"

# --- build ----------------------------------------------------------------------------------
if LIB=$("$HERE/build.sh" "$WORK/lib" 2>"$WORK/build.err") && [ -f "$LIB" ]; then
  if [ -s "$WORK/build.err" ]; then
    not_ok "build.sh: warnings" "$(cat "$WORK/build.err")"
  else
    ok "build.sh builds $(basename "$LIB") warning-free (-Wall -Wextra) and prints its path"
  fi
else
  die "build.sh" "$(cat "$WORK/build.err")"
fi
exports=$(nm -D --defined-only "$LIB" | awk '$2 == "T" { print $3 }' | sort | tr '\n' ' ')
if [ "$exports" = "C_GetFunctionList faultwrap_counter " ]; then
  ok "exports only C_GetFunctionList and faultwrap_counter"
else
  not_ok "exported functions" "$exports"
fi
if out=$(cc -O2 -Wall -Wextra -I"$HERE" -I"$HERE/../faulty" -o "$WORK/replicas_client" \
  "$HERE/replicas_client.c" -ldl -lpthread 2>&1) && [ -z "$out" ]; then
  ok "replicas_client.c builds warning-free"
else
  die "cc replicas_client.c" "$out"
fi

# --- SoftHSM tokens -------------------------------------------------------------------------
mkdir -p "$WORK/tokens"
cat > "$WORK/softhsm2.conf" <<CONF
directories.tokendir = $WORK/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
for label in r1 r2; do
  out=$(softhsm2-util --init-token --free --label "$label" --so-pin "$SO_PIN" --pin "$PIN" 2>&1) \
    || die "softhsm2-util --init-token $label" "$out"
done

CTL="$WORK/ctl"
export FAULTWRAP_ARGS="target=$TARGET_LIB ctl=$CTL"
mode() { echo "$1" > "$CTL"; }
p11() { pkcs11-tool --module "$LIB" "$@" 2>&1; }
# expect DESC STATUS PATTERN CMD...: CMD exits with STATUS (0 or "fail") and prints PATTERN.
expect() {
  local desc=$1 want=$2 pattern=$3 out rc
  shift 3
  out=$("$@" 2>&1)
  rc=$?
  if { [ "$want" = 0 ] && [ $rc -eq 0 ]; } || { [ "$want" = fail ] && [ $rc -ne 0 ]; }; then
    if grep -qE -- "$pattern" <<<"$out"; then
      ok "$desc"
      return 0
    fi
  fi
  not_ok "$desc" "exit $rc; $out"
  return 1
}

# --- ok ---------------------------------------------------------------------------------------
mode ok
expect "mode ok: -L lists token r1" 0 'token label +: r1$' p11 -L
expect "mode ok: --login --keypairgen --key-type EC:prime256v1" 0 'Key pair generated' \
  p11 --token-label r1 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --id 01 --label ec1
head -c 32 /dev/urandom > "$WORK/digest" # CKM_ECDSA signs a digest (SoftHSM 2.6 has no ECDSA-SHA256)
out="sign failed"
if p11 --token-label r1 --login --pin "$PIN" --sign --id 01 -m ECDSA \
     -i "$WORK/digest" -o "$WORK/sig" >/dev/null \
   && out=$(p11 --token-label r1 --verify --id 01 -m ECDSA -i "$WORK/digest" \
     --signature-file "$WORK/sig") && grep -q 'Signature is valid' <<<"$out"; then
  ok "mode ok: ECDSA sign and verify through the wrapper"
else
  not_ok "mode ok: ECDSA sign/verify" "$out"
fi
same=1
for args in "--test --login --pin $PIN --token-label r1" "-O --login --pin $PIN --token-label r1"; do
  # shellcheck disable=SC2086
  direct=$(pkcs11-tool --module "$TARGET_LIB" $args 2>&1)
  # shellcheck disable=SC2086
  wrapped=$(p11 $args)
  if [ "$direct" != "$wrapped" ]; then
    same=0
    not_ok "pkcs11-tool $args: wrapper and SoftHSM differ" \
      "$(diff <(echo "$direct") <(echo "$wrapped"))"
  fi
done
[ $same = 1 ] && ok "mode ok: pkcs11-tool --test and -O print the same as SoftHSM directly"

# --- error, gone, pin -----------------------------------------------------------------------
mode error
expect "mode error: -L fails with CKR_DEVICE_ERROR" fail 'CKR_DEVICE_ERROR' p11 -L
mode gone
expect "mode gone: -L fails with CKR_DEVICE_REMOVED" fail 'CKR_DEVICE_REMOVED' p11 -L
expect "mode gone: -T finds no slot with a token" fail '^No slots' p11 -T
mode pin
rm -f "$CTL.logins"
expect "mode pin: --login fails with CKR_PIN_INCORRECT" fail 'C_Login.*CKR_PIN_INCORRECT' \
  p11 --token-label r1 --login --pin "$PIN" -O
logins=$(cat "$CTL.logins" 2>/dev/null)
if [ "$logins" = 1 ]; then
  ok "mode pin: $(basename "$CTL").logins counts 1 attempt"
else
  not_ok "mode pin: $(basename "$CTL").logins" "'$logins'"
fi
expect "mode pin: calls other than C_Login forward (-L)" 0 'token label +: r1$' p11 -L
mode removed
expect "mode removed: -L fails with CKR_DEVICE_REMOVED" fail 'CKR_DEVICE_REMOVED' p11 -L
mode ok

# --- hang -------------------------------------------------------------------------------------
mode hang
pkcs11-tool --module "$LIB" -L > "$WORK/hang.out" 2>&1 &
HANG_PID=$!
PIDS+=("$HANG_PID")
sleep 1
if kill -0 "$HANG_PID" 2>/dev/null; then
  ok "mode hang: pkcs11-tool -L still running after 1 s"
  mode ok
  for _ in $(seq 20); do
    kill -0 "$HANG_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$HANG_PID" 2>/dev/null; then
    not_ok "mode hang -> ok: pkcs11-tool -L did not finish within 2 s"
  else
    wait "$HANG_PID"
    rc=$?
    PIDS=() # reaped: never signal that PID again
    if [ $rc -eq 0 ] && grep -qE 'token label +: r1$' "$WORK/hang.out"; then
      ok "mode hang -> ok: pkcs11-tool -L finishes within 2 s and lists r1"
    else
      not_ok "mode hang -> ok: pkcs11-tool -L" "exit $rc; $(cat "$WORK/hang.out")"
    fi
  fi
else
  wait "$HANG_PID"
  PIDS=()
  not_ok "mode hang: pkcs11-tool -L finished within 1 s" "$(cat "$WORK/hang.out")"
  mode ok
fi

rm -f "$CTL"
expect "no ctl file: forwards (-L)" 0 'token label +: r1$' p11 -L

# --- two copies in one process ----------------------------------------------------------------
mkdir -p "$WORK/rA" "$WORK/rB"
cp "$LIB" "$WORK/rA/libfaultwrap.so"
cp "$LIB" "$WORK/rB/libfaultwrap.so"
out=$("$WORK/replicas_client" "$TARGET_LIB" "$WORK/rA/libfaultwrap.so" "$WORK/ctlA" r1 \
  "$WORK/rB/libfaultwrap.so" "$WORK/ctlB" r2 "$PIN" 2>&1)
rc=$?
while IFS= read -r line; do
  case "$line" in
    "ok "*) ok "replicas: ${line#ok }" ;;
    "not ok "*) not_ok "replicas: ${line#not ok }" ;;
    *) echo "    $line" ;;
  esac
done <<<"$out"
[ $rc -eq 0 ] || grep -q '^not ok ' <<<"$out" || not_ok "replicas_client exited $rc"

finish
