#!/usr/bin/env bash
# OpenSC pkcs11-tool (0.23) as a consumer:
#  - `--test --login --pin` (and with --allow-sw, which adds the RSA signature tests for
#    mechanisms without CKF_HW) on a token holding AES, EC, HMAC keys, then also RSA;
#  - `--test-threads` (threads racing C_Initialize with and without CKF_OS_LOCKING_OK,
#    C_GetInfo, C_GetSlotList, C_GetTokenInfo while the main thread runs --test);
#  - `--test-fork` (the child must be able to C_Initialize again);
#  - a signature made with `--sign` verified by plain OpenSSL.
# Usage: [MODULE=/path/to/module.so] conformance/pkcs11_tool.sh
# SoftHSMv2 deviates in three places, recorded as known deviations when MODULE is SoftHSM:
# its OAEP takes SHA-1 only (so --test aborts once an RSA key exists), it crashes under
# --test-threads, and its child after fork answers CKR_CRYPTOKI_ALREADY_INITIALIZED.
source "$(dirname "$0")/lib.sh"
setup
init_token

# clean_test NAME ARGS...: pkcs11-tool --test must exit 0, end with "No errors" and print no
# error lines. Sets OUT.
clean_test() {
  local name=$1 rc=0; shift
  OUT=$("${PL[@]}" --test "$@" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ] && grep -q '^No errors' <<<"$OUT" \
    && ! grep -v '^No errors' <<<"$OUT" | grep -Eq 'ERR|[Ff]ailed|[Ee]rror'; then
    ok "$name"
    return 0
  fi
  return 1
}

keygen_aes 01 aes1
keygen_ec 02 ec1
keygen_hmac 04 hmac1
clean_test "pkcs11-tool --test with AES, EC and HMAC keys" || not_ok "pkcs11-tool --test with AES, EC and HMAC keys" "$OUT"
grep -q 'SHA256: OK' <<<"$OUT" && ok "--test ran the digest tests (SHA256: OK)" || not_ok "--test digest tests" "$OUT"

keygen_rsa 03 rsa1
n=$("${PL[@]}" --list-objects 2>/dev/null | grep -c 'Object;' || true)
[ "$n" -eq 6 ] && ok "token lists 6 objects (2 secret keys, 2 key pairs)" \
  || not_ok "token lists 6 objects (found $n)" "$("${PL[@]}" --list-objects 2>&1)"

for extra in "" "--allow-sw"; do
  name="pkcs11-tool --test $extra with AES, EC, RSA and HMAC keys"
  if clean_test "$name" $extra; then
    grep -q 'RSA-PKCS-OAEP' <<<"$OUT" && grep -Eq '^ +RSA-PKCS: OK' <<<"$OUT" \
      && ok "--test $extra exercised RSA-PKCS and RSA-PKCS-OAEP decryption" \
      || not_ok "--test $extra did not run the RSA decryption tests" "$OUT"
    if [ -n "$extra" ]; then
      grep -q 'SHA256-RSA-PKCS: OK' <<<"$OUT" && ok "--test --allow-sw ran the RSA signature tests" \
        || not_ok "--test --allow-sw ran no RSA signature test" "$OUT"
    fi
  elif [ "$TARGET" = softhsm ] && grep -q 'C_DecryptInit failed: rv = CKR_ARGUMENTS_BAD' <<<"$OUT" \
    && grep -q 'OAEP parameters: hashAlg=SHA256' <<<"$OUT"; then
    known "$name: SoftHSM refuses OAEP with SHA-256 (SHA-1 only); it printed:"
    sed 's/^/    | /' <<<"$OUT" | grep -v 'mechanism can.t be used to decrypt'
  else
    not_ok "$name" "$OUT"
  fi
done

# Threads: IL = C_Initialize with CKF_OS_LOCKING_OK, IN = C_Initialize(NULL), GI =
# C_GetInfo, SL = C_GetSlotList, T0 = C_GetTokenInfo of slot index 0 (pkcs11-tool 0.23's
# command set). The main thread runs --test meanwhile, so the threads race its
# C_Initialize and its sessions (and pkcs11-tool need not wait 30 s for late threads).
threads_run() {
  rc=0
  OUT=$(timeout 45 "${PL[@]}" --test --allow-sw --test-threads ILGISLT0 --test-threads INGISLT0 \
    --test-threads ILSLT0GI --test-threads INSLGIT0 2>&1) || rc=$?
}
threads_run
# Seen on hsmux in 2 of 10 runs on 2026-12-07: pkcs11-tool's main
# thread, racing the threads' C_Initialize, finds no slot by token label and stops before
# --test, while the threads' C_GetTokenInfo all answer the label. Not yet explained (an
# open defect in the issue notes); the run is repeated once, and it fails if it fails again.
FLAKED=""
if [ "$TARGET" = hsmux ] && [ "$rc" -ne 0 ] && grep -q '^No slot with token named' <<<"$OUT"; then
  FLAKED=$OUT
  threads_run
fi
if [ -n "$FLAKED" ]; then
  known "--test-threads: the main thread found no slot by label once (run again):"
  grep -v '^ ' <<<"$FLAKED" | head -3 | sed 's/^/    | /'
fi
threads_ended_ok() {
  grep -q 'test_threads all threads have ended with CKR_OK' <<<"$OUT" \
    && [ "$(grep -c 'state:-1, rv:CKR_OK' <<<"$OUT")" -ge 4 ]
}
if [ "$rc" -eq 0 ] && threads_ended_ok && grep -q '^No errors' <<<"$OUT"; then
  ok "--test-threads: 4 threads (C_Initialize x4, GetInfo, SlotList, TokenInfo) next to --test, all CKR_OK"
elif [ "$TARGET" = softhsm ] && [ "$rc" -eq 124 ]; then
  known "--test-threads: SoftHSM deadlocked (killed after 45 s) when threads race C_Initialize"
elif [ "$TARGET" = softhsm ] && [ "$rc" -ge 128 ]; then
  known "--test-threads: SoftHSM crashed (signal $((rc - 128))) when threads race C_Initialize"
elif [ "$TARGET" = softhsm ] && grep -Eq 'C_GetTokenInfo\(\) failed|CKR_SESSION_HANDLE_INVALID' <<<"$OUT"; then
  known "--test-threads: SoftHSM re-initializes under the running --test (C_GetTokenInfo CKR_GENERAL_ERROR, sessions invalidated):"
  grep -E 'ERR|[Ee]rror|failed' <<<"$OUT" | sort | uniq -c | sed 's/^/    | /'
elif [ "$TARGET" = softhsm ] && threads_ended_ok && grep -q 'C_DecryptInit failed: rv = CKR_ARGUMENTS_BAD' <<<"$OUT"; then
  known "--test-threads: the threads ended CKR_OK; the main --test hit SoftHSM's SHA-1-only OAEP again"
else
  not_ok "--test-threads (exit $rc)" "$OUT"
fi

# Fork: the parent initializes and logs in, the child calls C_Initialize again.
rc=0
OUT=$(timeout 60 "${PL[@]}" --test-fork 2>&1) || rc=$?
if [ "$rc" -eq 0 ] && grep -q 'Calling C_Initialize in forked child process' <<<"$OUT" \
  && ! grep -Eq 'error|[Ff]ailed' <<<"$OUT"; then
  ok "--test-fork: the child re-initializes the module"
elif [ "$TARGET" = softhsm ] && grep -q 'CKR_CRYPTOKI_ALREADY_INITIALIZED' <<<"$OUT"; then
  known "--test-fork: SoftHSM's child gets CKR_CRYPTOKI_ALREADY_INITIALIZED from C_Initialize"
else
  not_ok "--test-fork (exit $rc)" "$OUT"
fi

# --use-locking: C_Initialize with CKF_OS_LOCKING_OK (as p11-kit and OpenBao call it).
check "C_Initialize with CKF_OS_LOCKING_OK (--use-locking) and a slot list" "${P[@]}" --use-locking -L

# Signatures made by pkcs11-tool, verified by plain OpenSSL.
echo "hello hsmux" > "$WORK/msg"
export_pubkey 02 "$WORK/ec.pem"
export_pubkey 03 "$WORK/rsa.pem"
openssl_plain dgst -sha256 -binary -out "$WORK/msg.sha256" "$WORK/msg"
check "pkcs11-tool --sign ECDSA (raw, over a SHA-256 digest)" "${PL[@]}" --sign --id 02 -m ECDSA \
  --signature-format openssl -i "$WORK/msg.sha256" -o "$WORK/ecraw.sig"
check "openssl verifies the raw ECDSA signature" \
  openssl_plain dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/ecraw.sig" "$WORK/msg"
mechs=$("${P[@]}" --list-mechanisms 2>&1)
if grep -q '^ *ECDSA-SHA256' <<<"$mechs"; then
  check "pkcs11-tool --sign ECDSA-SHA256" "${PL[@]}" --sign --id 02 -m ECDSA-SHA256 \
    --signature-format openssl -i "$WORK/msg" -o "$WORK/ec.sig"
  check "openssl verifies the ECDSA-SHA256 signature" \
    openssl_plain dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/ec.sig" "$WORK/msg"
elif [ "$TARGET" = softhsm ]; then
  known "ECDSA-SHA256 is not in SoftHSM 2.6's mechanism list (only raw ECDSA)"
else
  not_ok "ECDSA-SHA256 is in the mechanism list" "$mechs"
fi
check "pkcs11-tool --sign SHA256-RSA-PKCS" "${PL[@]}" --sign --id 03 -m SHA256-RSA-PKCS \
  -i "$WORK/msg" -o "$WORK/rsa.sig"
check "openssl verifies the SHA256-RSA-PKCS signature" \
  openssl_plain dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/rsa.sig" "$WORK/msg"
check "pkcs11-tool --sign RSA-PKCS-PSS (SHA-256, MGF1-SHA256, salt 32)" "${PL[@]}" --sign --id 03 \
  -m SHA256-RSA-PKCS-PSS --mgf MGF1-SHA256 --salt-len 32 -i "$WORK/msg" -o "$WORK/pss.sig"
check "openssl verifies the RSA-PSS signature" \
  openssl_plain dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
  -verify "$WORK/rsa.pem" -signature "$WORK/pss.sig" "$WORK/msg"

# HMAC: pkcs11-tool signs with the generic secret; the tag must not be constant.
check "pkcs11-tool --sign SHA256-HMAC with the generic secret" "${PL[@]}" --sign --id 04 \
  -m SHA256-HMAC -i "$WORK/msg" -o "$WORK/mac1"
echo "other" > "$WORK/msg2"
"${PL[@]}" --sign --id 04 -m SHA256-HMAC -i "$WORK/msg2" -o "$WORK/mac2" >/dev/null 2>&1 || true
if [ "$(stat -c %s "$WORK/mac1" 2>/dev/null || echo 0)" -eq 32 ] && ! cmp -s "$WORK/mac1" "$WORK/mac2"; then
  ok "HMAC-SHA256 tags are 32 bytes and depend on the data"
else
  not_ok "HMAC-SHA256 tags are 32 bytes and depend on the data"
fi

# AES: encrypt with pkcs11-tool and decrypt back (round trip through the token).
head -c 64 /dev/urandom > "$WORK/plain"
iv=000102030405060708090a0b0c0d0e0f
if "${PL[@]}" --encrypt --id 01 -m AES-CBC --iv "$iv" -i "$WORK/plain" -o "$WORK/ct" >/dev/null 2>&1 \
  && "${PL[@]}" --decrypt --id 01 -m AES-CBC --iv "$iv" -i "$WORK/ct" -o "$WORK/pt" >/dev/null 2>&1 \
  && cmp -s "$WORK/plain" "$WORK/pt" && ! cmp -s "$WORK/plain" "$WORK/ct"; then
  ok "AES-CBC encrypt and decrypt round trip through pkcs11-tool"
else
  # pkcs11-tool 0.23 may lack --encrypt: then at least decrypt what OpenSSL cannot know.
  if ! pkcs11-tool --help 2>&1 | grep -q -- '--encrypt'; then
    note "this pkcs11-tool has no --encrypt; AES round trip skipped"
  else
    not_ok "AES-CBC encrypt and decrypt round trip through pkcs11-tool"
  fi
fi
