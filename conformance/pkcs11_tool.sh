#!/usr/bin/env bash
# OpenSC pkcs11-tool against hsmux's soft token holding AES, EC, RSA and HMAC keys:
# --test (also with --allow-sw, which runs the signature tests on software mechanisms),
# --test-threads and --test-fork.
source "$(dirname "$0")/lib.sh"
init_token
make_keys

n=$("${P[@]}" --login --pin "$PIN" --list-objects 2>/dev/null | grep -c "Object;")
[ "$n" -eq 6 ] || fail "expected 6 objects (2 secret, 2 pairs), found $n"

for extra in "" "--allow-sw"; do
  out=$("${P[@]}" --test $extra --login --pin "$PIN" 2>&1) || fail "pkcs11-tool --test $extra exited non-zero: $out"
  echo "$out" | grep -q "^No errors" || fail "pkcs11-tool --test $extra: $out"
  echo "$out" | grep -q "ERR" && fail "pkcs11-tool --test $extra reported an error: $out"
done
out=$("${P[@]}" --test --allow-sw --login --pin "$PIN" 2>&1)
echo "$out" | grep -q "SHA256-RSA-PKCS: OK" || fail "signature tests did not run: $out"

out=$(timeout 120 "${P[@]}" --test-threads ILGISLT0 --test-threads ILGISLT0 --test-threads ILSLT0GI 2>&1) \
  || fail "--test-threads exited non-zero"
echo "$out" | grep -q "all threads have ended with CKR_OK" || fail "--test-threads: $out"

out=$(timeout 60 "${P[@]}" --test-fork --login --pin "$PIN" 2>&1) || fail "--test-fork: $out"
echo "$out" | grep -q "Calling C_Initialize in forked child process" || fail "--test-fork did not fork: $out"

# A signature made through pkcs11-tool verifies with plain OpenSSL.
echo "hello hsmux" > "$WORK/msg"
"${P[@]}" --login --pin "$PIN" --sign --id 02 -m ECDSA-SHA256 --signature-format openssl -i "$WORK/msg" -o "$WORK/sig" >/dev/null 2>&1
"${P[@]}" --read-object --type pubkey --id 02 -o "$WORK/ec.der" >/dev/null 2>&1
openssl dgst -sha256 -verify "$WORK/ec.der" -keyform DER -signature "$WORK/sig" "$WORK/msg" | grep -q "Verified OK" \
  || fail "ECDSA signature from hsmux did not verify with openssl"
echo "pkcs11-tool: --test, --test-threads, --test-fork and an openssl-verified signature all pass"
