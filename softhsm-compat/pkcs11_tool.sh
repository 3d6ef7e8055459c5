#!/usr/bin/env bash
# pkcs11-tool (OpenSC) against SoftHSMv2 directly and SoftHSMv2 behind hsmux: the same
# command sequence on two tokens made alike (softhsm2-util, label $LABEL) must print the
# same thing and exit alike. Compared: token re-initialization, PIN set-up, key
# generation (exit codes), the mechanism list (-M), the object list (-O), `--test` with AES,
# EC and HMAC keys, then with the EC pair replaced by an RSA one, and with --allow-sw (which adds SoftHSM's
# known OAEP failure: it must fail the same way behind hsmux), and a wrong PIN.
# Lines that name slot numbers or ids are dropped before comparing (hsmux numbers its
# slots itself), and so are EC_POINT values (keys are random). SoftHSM's file store lists
# objects in an order of its own (files with random names, read back per process), which
# differs between two tokens even without hsmux: for the steps that walk the objects (marked "any order") the key index is dropped
# from pkcs11-tool's "testing key N" lines and the lines are compared sorted.
# Usage: softhsm-compat/pkcs11_tool.sh
MODULE=behind
source "$(dirname "$0")/../conformance/lib.sh"
LABEL=compat
setup
BEHIND_CONF=$SOFTHSM2_CONF

# The direct side: its own token directory with a token made the same way.
mkdir -p "$WORK/direct-tokens"
cat > "$WORK/direct.conf" <<CONF
directories.tokendir = $WORK/direct-tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
out=$(SOFTHSM2_CONF="$WORK/direct.conf" softhsm2-util --init-token --free --label "$LABEL" \
  --so-pin "$SO_PIN" --pin "$PIN" 2>&1) || die "softhsm2-util for the direct side" "$out"

# run_sequence OUT MODULE CONF: the commands, each output under a header with its exit code.
run_sequence() {
  local out=$1 module=$2 conf=$3 rc
  local T=(env SOFTHSM2_CONF="$conf" pkcs11-tool --module "$module" --token-label "$LABEL")
  : > "$out"
  step() { # name, args...
    local name=$1 text; shift
    rc=0
    text=$("${T[@]}" "$@" 2>&1) || rc=$?
    text=$(grep -Ev '^Using slot|^Slot [0-9]|slot ID 0x|EC_POINT:' <<<"$text" || true)
    case "$name" in
      *"any order"*) text=$(sed -E 's/testing key [0-9]+ /testing key /' <<<"$text" | sort) ;;
    esac
    { echo "## $name (exit $rc)"; printf '%s\n' "$text"; } >> "$out"
  }
  quiet() { # name, args...: only the exit code (key values are random)
    local name=$1; shift
    rc=0
    "${T[@]}" "$@" >/dev/null 2>&1 || rc=$?
    echo "## $name (exit $rc)" >> "$out"
  }
  step "re-initialize the token" --init-token --label "$LABEL" --so-pin "$SO_PIN"
  step "set the user PIN" --init-pin --login --login-type so --so-pin "$SO_PIN" --pin "$PIN"
  step "wrong user PIN" --login --pin 9999 --list-objects
  step "mechanisms" --list-mechanisms
  quiet "AES key" --login --pin "$PIN" --keygen --key-type AES:32 --id 01 --label aes1
  quiet "EC key" --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --id 02 --label ec1
  quiet "HMAC key" --login --pin "$PIN" --keygen --key-type GENERIC:32 --id 04 --label hmac1
  step "objects, logged out, any order" --list-objects
  step "test with AES, EC, HMAC keys, any order" --login --pin "$PIN" --test
  # pkcs11-tool tests its first private key with every mechanism and the others with one,
  # so with two key pairs its output follows SoftHSM's object order: one pair at a time.
  quiet "delete the EC private key" --login --pin "$PIN" --delete-object --type privkey --id 02
  quiet "delete the EC public key" --login --pin "$PIN" --delete-object --type pubkey --id 02
  quiet "RSA key" --login --pin "$PIN" --keypairgen --key-type rsa:2048 --id 03 --label rsa1
  step "objects, logged in, any order" --login --pin "$PIN" --list-objects --type privkey
  step "test with an RSA key too, any order" --login --pin "$PIN" --test
  step "test --allow-sw, any order" --login --pin "$PIN" --test --allow-sw
}

run_sequence "$WORK/direct.out" "$SOFTHSM_MODULE" "$WORK/direct.conf"
run_sequence "$WORK/behind.out" "$MODULE" "$BEHIND_CONF"

steps=$(grep -c '^## ' "$WORK/direct.out")
[ "$steps" -eq 15 ] && ok "the sequence ran 15 steps on SoftHSM directly" \
  || not_ok "the sequence ran $steps steps" "$(cat "$WORK/direct.out")"
grep -q '^## test with AES, EC, HMAC keys, any order (exit 0)' "$WORK/direct.out" \
  && grep -q '^No errors' "$WORK/direct.out" && ok "--test passes on SoftHSM directly (a real run to compare with)" \
  || not_ok "--test on SoftHSM directly" "$(cat "$WORK/direct.out")"
if d=$(diff -u "$WORK/direct.out" "$WORK/behind.out"); then
  ok "pkcs11-tool prints the same through hsmux as directly on SoftHSM ($(wc -l < "$WORK/direct.out") lines)"
else
  not_ok "pkcs11-tool output differs between SoftHSM directly and behind hsmux" "$d"
fi
