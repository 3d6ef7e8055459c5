#!/usr/bin/env bash
# backend = "module" with vendor libraries that fail (hsmux only). Faulty "vendor
# libraries" are built from conformance/faulty/*.c: C_Initialize crashes (SIGSEGV) or hangs,
# no C_GetFunctionList, an undefined symbol, a missing dependency, C_Initialize answers
# CKR_GENERAL_ERROR; and a library path that does not exist. One config puts each in its
# own slot next to a SoftHSMv2 token, an hsmux soft token and two more SoftHSM slots for
# the PIN options. Checked through pkcs11-tool and a small C consumer (faulty/slots_client.c):
#  - the consumer survives; C_Initialize returns within 15 s although one library hangs;
#  - every faulty slot is listed without a token ("(module unavailable)"), is absent from
#    C_GetSlotList(TRUE), answers CKR_TOKEN_NOT_PRESENT, and the log names its cause;
#  - the SoftHSM slot works end to end (EC key pair, ECDSA signature that OpenSSL verifies
#    with the public key read back through hsmux), and so does the soft slot;
#  - pin = { env = UNSET } fails at C_Login with a log line; user_pin refuses a wrong PIN
#    with CKR_PIN_INCORRECT; a configured pin is what the vendor gets;
#  - the examples/module-*.toml files parse (`hsmux check`), module-softhsm.toml serves
#    its two SoftHSM tokens.
# Usage: conformance/module_faults.sh (hsmux only: MODULE=SoftHSM or behind is skipped).
source "$(dirname "$0")/lib.sh"
if [ "$TARGET" != hsmux ]; then
  note "module_faults tests hsmux's module backend: nothing to run against $TARGET"
  exit 0
fi
setup
command -v cc >/dev/null || die "cc not installed (scripts/deps.sh installs build-essential)"
command -v softhsm2-util >/dev/null && [ -f "$SOFTHSM_MODULE" ] \
  || die "SoftHSMv2 not installed ($SOFTHSM_MODULE, softhsm2-util; scripts/deps.sh)"
HSMUX_BIN="$REPO/target/release/hsmux"
[ -x "$HSMUX_BIN" ] || die "$HSMUX_BIN not found (cargo build --release first)"
# The crashing library's probe child must not leave core files behind.
ulimit -c 0
cd "$WORK"
unset HSMUX_FAULTS_UNSET_VAR

# --- the faulty libraries -------------------------------------------------------------------
SRC="$REPO/conformance/faulty"
LIBS="$WORK/faulty"
mkdir -p "$LIBS/dep"
CC=(cc -O2 -Wall -Wextra -fPIC -I"$SRC")
build() { # name source cc-args...: $LIBS/libNAME.so
  local name=$1 src=$2 out; shift 2
  out=$("${CC[@]}" -shared -o "$LIBS/lib$name.so" "$SRC/$src" "$@" 2>&1) || die "cc $src" "$out"
}
build crash crash.c
build hang hang.c
build nosym nosym.c
build undef undef.c
build initfail initfail.c
out=$("${CC[@]}" -shared -o "$LIBS/dep/libvendordep.so" "$SRC/vendordep.c" 2>&1) || die "cc vendordep.c" "$out"
build nodep nodep.c -L"$LIBS/dep" -Wl,-rpath,"$LIBS/dep" -lvendordep
rm -f "$LIBS/dep/libvendordep.so" # the "vendor runtime" is gone
out=$(cc -O2 -Wall -Wextra -I"$SRC" -o "$LIBS/slots_client" "$SRC/slots_client.c" -ldl 2>&1) \
  || die "cc slots_client.c" "$out"
if nm -D "$LIBS/libnosym.so" | grep -q ' C_GetFunctionList$' \
  || ! nm -D "$LIBS/libundef.so" | grep -q ' U hsmux_faulty_vendor_runtime_init$' \
  || ! readelf -d "$LIBS/libnodep.so" | grep -q 'NEEDED.*libvendordep.so'; then
  die "the faulty libraries are not built as intended (nm/readelf)"
fi
ok "built 6 faulty vendor libraries and the C consumer (faulty/*.c)"

# --- SoftHSM tokens -------------------------------------------------------------------------
mkdir -p "$WORK/softhsm-tokens"
cat > "$WORK/softhsm2.conf" <<CONF
directories.tokendir = $WORK/softhsm-tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
for t in tokA tokB tokC signing seal-keys; do
  out=$(softhsm2-util --init-token --free --label "$t" --so-pin "$SO_PIN" --pin "$PIN" 2>&1) \
    || die "softhsm2-util --init-token $t" "$out"
done
# softhsm_field LABEL "Serial number": a token's field from softhsm2-util --show-slots.
softhsm_field() {
  softhsm2-util --show-slots | awk -v want="$1" -v field="$2" '
    /^Slot / { slot = $2 }
    index($0, field ":") { v = $0; sub("^[^:]*: *", "", v); sub(" *$", "", v); f[slot] = v }
    /Label:/ { l = $0; sub("^[^:]*: *", "", l); sub(" *$", "", l); if (l == want) { print (field == "Slot" ? slot : f[slot]); exit } }'
}
SERIAL_B=$(softhsm_field tokB "Serial number")
SLOT_C=$(softhsm_field tokC Slot)
[ -n "$SERIAL_B" ] && [ -n "$SLOT_C" ] || die "softhsm2-util --show-slots: serial of tokB / slot of tokC not found"

# --- the configuration ----------------------------------------------------------------------
PIN_SHA=$(printf %s "$PIN" | sha256sum | cut -d' ' -f1)
CONF="$WORK/faults.toml"
module_slot() { # label library [extra TOML lines]
  printf '\n[[slot]]\nlabel = "%s"\nbackend = "module"\nlibrary = "%s"\ntoken = "vendor-token"\n%s' "$1" "$2" "${3:-}"
}
{
  printf '[[slot]]\nlabel = "softhsm-a"\nbackend = "module"\nlibrary = "%s"\ntoken = "tokA"\n' "$SOFTHSM_MODULE"
  module_slot crash "$LIBS/libcrash.so"
  module_slot hang "$LIBS/libhang.so" $'timeout_ms = 2000\n'
  module_slot nosym "$LIBS/libnosym.so"
  module_slot undef "$LIBS/libundef.so"
  module_slot nodep "$LIBS/libnodep.so"
  module_slot initfail "$LIBS/libinitfail.so"
  module_slot absent "$LIBS/libdoesnotexist.so"
  printf '\n[[slot]]\nlabel = "%s"\nbackend = "soft"\npath = "%s"\nkdf_iterations = 1000\n' "$LABEL" "$WORK/soft"
  printf '\n[[slot]]\nlabel = "envpin"\nbackend = "module"\nlibrary = "%s"\nserial = "%s"\n' "$SOFTHSM_MODULE" "$SERIAL_B"
  printf 'pin = { env = "HSMUX_FAULTS_UNSET_VAR" }\n'
  printf '\n[[slot]]\nlabel = "pincheck"\nbackend = "module"\nlibrary = "%s"\nslot = %s\n' "$SOFTHSM_MODULE" "$SLOT_C"
  printf 'pin = "%s"\nuser_pin = { sha256 = "%s" }\n' "$PIN" "$PIN_SHA"
} > "$CONF"
export HSMUX_CONFIG="$CONF" HSMUX_LOG=info
# slot ids in file order
declare -A ID=([softhsm-a]=0 [crash]=1 [hang]=2 [nosym]=3 [undef]=4 [nodep]=5 [initfail]=6
  [absent]=7 [$LABEL]=8 [envpin]=9 [pincheck]=10)
FAULTY=(crash hang nosym undef nodep initfail absent)
declare -A CAUSE=(
  [crash]='crashed \(signal 11\)'
  [hang]='C_Initialize did not return within 2000 ms'
  [nosym]='has no C_GetFunctionList'
  [undef]='cannot load: .*undefined symbol: hsmux_faulty_vendor_runtime_init'
  [nodep]='cannot load: libvendordep.so: cannot open shared object file'
  [initfail]='C_Initialize failed: CKR_GENERAL_ERROR'
  [absent]='cannot load: .*libdoesnotexist.so: cannot open shared object file'
)


# --- the consumer survives, C_Initialize returns in time --------------------------------------
rc=0
t0=$(date +%s)
LIST=$("${P0[@]}" -L 2>"$WORK/list.log") || rc=$?
t1=$(date +%s)
LOG=$(cat "$WORK/list.log")
[ "$rc" -eq 0 ] && ok "pkcs11-tool -L with 7 faulty vendor libraries configured exits 0" \
  || not_ok "pkcs11-tool -L exits 0 (exit $rc$([ "$rc" -ge 128 ] && echo ", signal $((rc - 128))"))" "$LIST"$'\n'"$LOG"
[ $((t1 - t0)) -lt 15 ] && ok "C_Initialize returns in $((t1 - t0)) s although a library hangs (probe deadline 2 s)" \
  || not_ok "C_Initialize returns within 15 s (took $((t1 - t0)) s)"

for s in "${FAULTY[@]}"; do
  id=${ID[$s]}
  if grep -q "^Slot $id (0x$(printf %x "$id")): hsmux $s (module unavailable)" <<<"$LIST" \
    && grep -A1 "^Slot $id (" <<<"$LIST" | grep -q '(empty)'; then
    ok "pkcs11-tool -L lists slot $id ($s) as \"hsmux $s (module unavailable)\", (empty)"
  else
    not_ok "pkcs11-tool -L lists slot $id ($s) as unavailable and empty" "$LIST"
  fi
  if grep -Eq "ERROR.*slot $id \($s\): vendor library [^ ]+: .*${CAUSE[$s]}.*; the slot is disabled" <<<"$LOG"; then
    ok "log: slot $id ($s) disabled, cause: ${CAUSE[$s]}"
  else
    not_ok "log names slot $id ($s) and its cause (${CAUSE[$s]})" "$LOG"
  fi
done
grep -A1 "^Slot 0 (0x0): " <<<"$LIST" | grep -q 'token label *: softhsm-a' \
  && grep -A1 "^Slot 8 (0x8): " <<<"$LIST" | grep -q 'token state: *uninitialized' \
  && ok "pkcs11-tool -L shows the SoftHSM token under its hsmux label and the soft slot" \
  || not_ok "pkcs11-tool -L shows the SoftHSM token (softhsm-a) and the soft slot" "$LIST"

# The C consumer: C_GetSlotList(TRUE/FALSE), C_GetTokenInfo per slot, C_Finalize.
rc=0
OUT=$("$LIBS/slots_client" "$MODULE" 2>"$WORK/client.log") || rc=$?
if [ "$rc" -eq 0 ] && grep -qx 'all: 0 1 2 3 4 5 6 7 8 9 10' <<<"$OUT" \
  && grep -qx 'present: 0 8 9 10' <<<"$OUT" && grep -qx 'finalize rv=0x0' <<<"$OUT"; then
  ok "C_GetSlotList: FALSE lists all 11 slots, TRUE only the 4 with a token; C_Finalize CKR_OK"
else
  not_ok "C_GetSlotList(FALSE/TRUE) and C_Finalize (exit $rc)" "$OUT"$'\n'"$(cat "$WORK/client.log")"
fi
ms=$(sed -n 's/^init rv=0x0 ms=\([0-9]*\)$/\1/p' <<<"$OUT")
[ -n "$ms" ] && [ "$ms" -ge 1900 ] && [ "$ms" -lt 15000 ] \
  && ok "C_Initialize took $ms ms: the hanging library's probe ran to its 2000 ms deadline, no longer" \
  || not_ok "C_Initialize time (${ms:-?} ms) between the 2 s probe deadline and 15 s" "$OUT"
n=0
for s in "${FAULTY[@]}"; do
  grep -qx "slot ${ID[$s]} flags=0x2 slot_rv=0x0 token_rv=0xe0 desc=hsmux $s (module unavailable) label=" <<<"$OUT" \
    && n=$((n + 1))
done
[ "$n" -eq ${#FAULTY[@]} ] \
  && ok "each faulty slot: C_GetSlotInfo CKR_OK without CKF_TOKEN_PRESENT, C_GetTokenInfo CKR_TOKEN_NOT_PRESENT" \
  || not_ok "faulty slots' slot/token info ($n of ${#FAULTY[@]} as expected)" "$OUT"

# A consumer that ignores SIGCHLD (daemons do; the disposition survives exec): the probe's
# child is reaped by the kernel, so waitpid cannot tell the crash; the probe's pipe must.
if command -v python3 >/dev/null; then
  rc=0
  OUT=$(python3 -c 'import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])' "$LIBS/slots_client" "$MODULE" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ] && grep -q 'slot 1 flags=0x2 slot_rv=0x0 token_rv=0xe0' <<<"$OUT"; then
    ok "a consumer with SIGCHLD ignored survives the crashing library too"
  else
    not_ok "a consumer with SIGCHLD ignored is killed by the crashing library (exit $rc$([ "$rc" -ge 128 ] && echo ", signal $((rc - 128))"))" "$OUT"
  fi
fi

# --- the SoftHSM slot end to end ----------------------------------------------------------------
PA=(pkcs11-tool --module "$MODULE" --token-label softhsm-a)
PAL=("${PA[@]}" --login --pin "$PIN")
check "SoftHSM slot: EC P-256 key pair generated through hsmux" \
  "${PAL[@]}" --keypairgen --key-type EC:prime256v1 --id 11 --label ec-softhsm
echo "signed through hsmux by SoftHSM" > "$WORK/msg"
openssl_plain dgst -sha256 -binary -out "$WORK/msg.sha256" "$WORK/msg"
if out=$("${PA[@]}" --read-object --type pubkey --id 11 -o "$WORK/ec11.der" 2>&1) \
  && openssl_plain pkey -pubin -inform DER -in "$WORK/ec11.der" -out "$WORK/ec11.pem" 2>&1; then
  ok "SoftHSM slot: the public key read back through hsmux is a valid EC key"
else
  not_ok "SoftHSM slot: read the public key back through hsmux" "$out"
fi
check "SoftHSM slot: pkcs11-tool --sign -m ECDSA (over a SHA-256 digest)" \
  "${PAL[@]}" --sign --id 11 -m ECDSA --signature-format openssl -i "$WORK/msg.sha256" -o "$WORK/ec11.sig"
check "openssl verifies the SoftHSM slot's ECDSA signature with the public key from hsmux" \
  openssl_plain dgst -sha256 -verify "$WORK/ec11.pem" -signature "$WORK/ec11.sig" "$WORK/msg"
if "${PA[@]}" --list-mechanisms 2>/dev/null | grep -q '^ *ECDSA-SHA256'; then
  check "SoftHSM slot: pkcs11-tool --sign -m ECDSA-SHA256" \
    "${PAL[@]}" --sign --id 11 -m ECDSA-SHA256 --signature-format openssl -i "$WORK/msg" -o "$WORK/ec11b.sig"
  check "openssl verifies the ECDSA-SHA256 signature" \
    openssl_plain dgst -sha256 -verify "$WORK/ec11.pem" -signature "$WORK/ec11b.sig" "$WORK/msg"
else
  note "SoftHSM lists no ECDSA-SHA256 (2.6 has raw ECDSA only): signed the digest with ECDSA above"
fi
# The key is SoftHSM's: SoftHSM loaded directly (no hsmux) finds it on tokA.
out=$(pkcs11-tool --module "$SOFTHSM_MODULE" --token-label tokA --login --pin "$PIN" --list-objects --type privkey 2>&1) || true
grep -q 'label: *ec-softhsm' <<<"$out" && ok "the key pair is on SoftHSM's token tokA (SoftHSM loaded directly)" \
  || not_ok "the key pair is on SoftHSM's token tokA" "$out"

# --- the soft slot -----------------------------------------------------------------------
PS=(pkcs11-tool --module "$MODULE" --token-label "$LABEL")
check "soft slot: C_InitToken next to the faulty slots" "${PS[@]}" --init-token --label "$LABEL" --so-pin "$SO_PIN"
check "soft slot: C_InitPIN" "${PS[@]}" --init-pin --login --login-type so --so-pin "$SO_PIN" --pin "$PIN"
check "soft slot: EC P-256 key pair generated" \
  "${PS[@]}" --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --id 21 --label ec-soft
if out=$("${PS[@]}" --login --pin "$PIN" --sign --id 21 -m ECDSA --signature-format openssl \
  -i "$WORK/msg.sha256" -o "$WORK/ec21.sig" 2>&1) \
  && "${PS[@]}" --read-object --type pubkey --id 21 -o "$WORK/ec21.der" >/dev/null 2>&1 \
  && openssl_plain pkey -pubin -inform DER -in "$WORK/ec21.der" -out "$WORK/ec21.pem" \
  && openssl_plain dgst -sha256 -verify "$WORK/ec21.pem" -signature "$WORK/ec21.sig" "$WORK/msg" >/dev/null 2>&1; then
  ok "soft slot: ECDSA signature verified by openssl"
else
  not_ok "soft slot: ECDSA signature verified by openssl" "$out"
fi

# --- PIN options ---------------------------------------------------------------------------
# pin = { env = "HSMUX_FAULTS_UNSET_VAR" } (the variable is not set): C_Login fails cleanly.
rc=0
out=$(pkcs11-tool --module "$MODULE" --token-label envpin --login --pin "$PIN" --list-objects 2>&1) || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && grep -q 'C_Login.*CKR_GENERAL_ERROR' <<<"$out"; then
  ok "pin = { env = unset variable }: C_Login answers CKR_GENERAL_ERROR (no crash)"
else
  not_ok "pin = { env = unset variable }: C_Login answers an error code (exit $rc)" "$out"
fi
grep -q "ERROR.*slot 9 (envpin): C_Login: the configured pin: .*environment variable HSMUX_FAULTS_UNSET_VAR is not set" <<<"$out" \
  && ok "log: slot 9 (envpin) names the unset variable HSMUX_FAULTS_UNSET_VAR" \
  || not_ok "log names the unset pin variable" "$out"
grep -q 'envpin).*`pin` is configured without `user_pin`' <<<"$out" \
  && ok "log warns that envpin's configured pin has no user_pin check" \
  || not_ok "log warns about pin without user_pin" "$out"

# user_pin = { sha256 = sha256("1234") }, pin = "1234".
rc=0
out=$(pkcs11-tool --module "$MODULE" --token-label pincheck --login --pin 9999 --list-objects 2>&1) || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && grep -q 'C_Login.*CKR_PIN_INCORRECT' <<<"$out"; then
  ok "user_pin: --pin 9999 is refused with CKR_PIN_INCORRECT"
else
  not_ok "user_pin: --pin 9999 is refused with CKR_PIN_INCORRECT (exit $rc)" "$out"
fi
check "user_pin: --pin 1234 logs in (and generates a key on tokC, chosen by slot = $SLOT_C)" \
  pkcs11-tool --module "$MODULE" --token-label pincheck --login --pin "$PIN" \
  --keypairgen --key-type EC:prime256v1 --id 31 --label ec-pincheck

# The configured pin is what the vendor gets: consumers give "consumer-5678", SoftHSM's
# user PIN is 1234 (read from a file).
printf '%s\n' "$PIN" > "$WORK/tokC.pin"
CONSUMER_PIN=consumer-5678
{
  printf '[[slot]]\nlabel = "pinfile"\nbackend = "module"\nlibrary = "%s"\ntoken = "tokC"\n' "$SOFTHSM_MODULE"
  printf 'pin = { file = "%s" }\nuser_pin = { sha256 = "%s" }\n' "$WORK/tokC.pin" \
    "$(printf %s "$CONSUMER_PIN" | sha256sum | cut -d' ' -f1)"
} > "$WORK/pinfile.toml"
out=$(HSMUX_CONFIG="$WORK/pinfile.toml" pkcs11-tool --module "$MODULE" --token-label pinfile \
  --login --pin "$CONSUMER_PIN" --list-objects --type privkey 2>&1) || true
grep -q 'label: *ec-pincheck' <<<"$out" \
  && ok "pin = { file }: the consumer's PIN passes user_pin, SoftHSM gets the file's PIN" \
  || not_ok "pin = { file } with user_pin: login with the consumer's PIN" "$out"
rc=0
out=$(HSMUX_CONFIG="$WORK/pinfile.toml" pkcs11-tool --module "$MODULE" --token-label pinfile \
  --login --pin "$PIN" --list-objects 2>&1) || rc=$?
[ "$rc" -ne 0 ] && grep -q 'CKR_PIN_INCORRECT' <<<"$out" \
  && ok "pin = { file }: the vendor's own PIN given by a consumer is refused (CKR_PIN_INCORRECT)" \
  || not_ok "pin = { file }: the vendor's PIN given by a consumer is refused (exit $rc)" "$out"

# --- hsmux check -------------------------------------------------------------------------
# `hsmux check` lists every slot: a module slot with its vendor token, a disabled one as a
# PROBLEM (exit status 1). It is a consumer too: with the faulty config it must not crash.
rc=0
out=$("$HSMUX_BIN" check --config "$CONF" 2>&1) || rc=$?
[ "$rc" -le 1 ] && grep -q "^slot 8: token \"$LABEL\" serial [^ ]* initialized, user PIN ok, SO PIN ok$" <<<"$out" \
  && ok "hsmux check with the faulty config exits $rc (no crash) and lists the soft slot" \
  || not_ok "hsmux check with the faulty config (exit $rc)" "$out"
grep -q '^slot 0: "softhsm-a" = token label "tokA" of .*: token "tokA" serial [^ ]* model "SoftHSM v2" initialized, user PIN ok, SO PIN ok$' <<<"$out" \
  && ok "hsmux check shows the SoftHSM token of module slot 0" \
  || not_ok "hsmux check does not show module slot 0's token: $(grep '^slot 0:' <<<"$out" || echo 'slot 0 missing')" "$out"

# The examples: the vendor libraries are not installed here, so each slot must come out
# parsed and disabled ("cannot load"), not as a configuration error.
for f in "$REPO"/examples/module-*.toml; do
  name=$(basename "$f")
  [ "$name" = module-softhsm.toml ] && continue
  rc=0
  out=$(HSMUX_LOG=warn "$HSMUX_BIN" check --config "$f" 2>&1) || rc=$?
  label=$(sed -n 's/^label = "\([^"]*\)".*/\1/p' "$f" | head -n 1)
  if [ "$rc" -le 1 ] && grep -q "^config: $f" <<<"$out" && ! grep -qi 'configuration error' <<<"$out" \
    && grep -q "slot 0 ($label): vendor library .*: cannot load: " <<<"$out" \
    && grep -q "^slot 0: PROBLEM: \"$label\": vendor library .*: cannot load: " <<<"$out"; then
    ok "examples/$name parses; its slot ($label) is disabled here (library not installed)"
  else
    not_ok "examples/$name parses and its slot is reported unavailable (exit $rc)" "$out"
  fi
  [ "$rc" -eq 1 ] || not_ok "hsmux check examples/$name exits $rc although its only slot is disabled" "$out"
done
# module-softhsm.toml against this test's SoftHSM (tokens "signing" and "seal-keys"); its
# soft slot's path moved into the temp dir.
sed "s|^path = .*|path = \"$WORK/example-dev\"|" "$REPO/examples/module-softhsm.toml" > "$WORK/module-softhsm.toml"
[ "$(diff "$REPO/examples/module-softhsm.toml" "$WORK/module-softhsm.toml" | grep -c '^[<>]')" -eq 2 ] \
  || die "examples/module-softhsm.toml: expected exactly one soft slot path line"
rc=0
out=$(HSMUX_CONFIG="$WORK/module-softhsm.toml" "${P0[@]}" -L 2>&1) || rc=$?
if [ "$rc" -eq 0 ] && grep -A1 '^Slot 0 (0x0): SoftHSM' <<<"$out" | grep -q 'token label *: signing$' \
  && grep -A1 '^Slot 1 (0x1): SoftHSM' <<<"$out" | grep -q 'token label *: sealing$' \
  && grep -A1 '^Slot 2 (0x2): hsmux soft' <<<"$out" | grep -q 'token state: *uninitialized'; then
  ok "examples/module-softhsm.toml: pkcs11-tool sees both SoftHSM tokens (by label) and the soft slot"
else
  not_ok "examples/module-softhsm.toml through pkcs11-tool -L (exit $rc)" "$out"
fi
rc=0
out=$(HSMUX_LOG=warn "$HSMUX_BIN" check --config "$WORK/module-softhsm.toml" 2>&1) || rc=$?
[ "$rc" -le 1 ] && ! grep -qi 'configuration error' <<<"$out" && grep -q '^slot 2: token "dev"' <<<"$out" \
  && ok "hsmux check examples/module-softhsm.toml: parses, exits $rc, lists the soft slot" \
  || not_ok "hsmux check examples/module-softhsm.toml (exit $rc)" "$out"
if [ "$rc" -eq 0 ] && grep -q '^slot 0: "signing" = .*: token "signing" serial [^ ]* model "SoftHSM v2" initialized, user PIN ok, SO PIN ok$' <<<"$out" \
  && grep -q '^slot 1: "sealing" = token label "seal-keys" .*: token "seal-keys" serial [^ ]* model "SoftHSM v2" initialized, user PIN ok, SO PIN ok$' <<<"$out"; then
  ok "hsmux check examples/module-softhsm.toml shows both SoftHSM tokens"
else
  not_ok "hsmux check examples/module-softhsm.toml: $(grep -E '^slot [01]:' <<<"$out" | tr '\n' ';')" "$out"
fi
