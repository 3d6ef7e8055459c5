#!/usr/bin/env bash
# OpenSSL with the libp11 engine signs with an EC and an RSA key of hsmux's soft token,
# addressed by RFC 7512 pkcs11: URIs; plain OpenSSL (no engine) verifies with the public
# keys exported from the token. Also a self-signed certificate made through the engine.
source "$(dirname "$0")/lib.sh"
[ -f "$ENGINE" ] || fail "libp11 engine not installed"
init_token
make_keys
for id in 02 03; do
  "${P[@]}" --read-object --type pubkey --id $id -o "$WORK/$id.der" >/dev/null 2>&1
  openssl pkey -pubin -inform DER -in "$WORK/$id.der" -out "$WORK/$id.pem"
done
write_openssl_cnf
echo "the quick brown fox" > "$WORK/msg"
openssl dgst -sha256 -binary -out "$WORK/hash" "$WORK/msg"

# EC P-256: pkeyutl over a digest, verified by OpenSSL alone.
openssl pkeyutl -engine pkcs11 -keyform engine -inkey "pkcs11:token=$LABEL;object=ec1;type=private" \
  -sign -in "$WORK/hash" -out "$WORK/ec.sig" 2>/dev/null || fail "ECDSA signing through the engine failed"
OPENSSL_CONF=/dev/null openssl pkeyutl -verify -pubin -inkey "$WORK/02.pem" -in "$WORK/hash" -sigfile "$WORK/ec.sig" \
  | grep -q "Signature Verified Successfully" || fail "ECDSA signature did not verify"

# RSA-2048: dgst -sign (PKCS#1 v1.5 with SHA-256), verified by OpenSSL alone.
openssl dgst -sha256 -engine pkcs11 -keyform engine -sign "pkcs11:token=$LABEL;object=rsa1;type=private" \
  -out "$WORK/rsa.sig" "$WORK/msg" 2>/dev/null || fail "RSA signing through the engine failed"
OPENSSL_CONF=/dev/null openssl dgst -sha256 -verify "$WORK/03.pem" -signature "$WORK/rsa.sig" "$WORK/msg" \
  | grep -q "Verified OK" || fail "RSA signature did not verify"

# RSA-PSS through pkeyutl.
openssl pkeyutl -engine pkcs11 -keyform engine -inkey "pkcs11:token=$LABEL;object=rsa1;type=private" \
  -sign -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32 \
  -in "$WORK/hash" -out "$WORK/pss.sig" 2>/dev/null || fail "RSA-PSS signing through the engine failed"
OPENSSL_CONF=/dev/null openssl pkeyutl -verify -pubin -inkey "$WORK/03.pem" -pkeyopt digest:sha256 \
  -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32 -in "$WORK/hash" -sigfile "$WORK/pss.sig" \
  | grep -q "Signature Verified Successfully" || fail "RSA-PSS signature did not verify"

# A self-signed certificate whose signature OpenSSL checks.
make_cert ec1 02
OPENSSL_CONF=/dev/null openssl verify -CAfile "$WORK/ec1.crt" "$WORK/ec1.crt" | grep -q ": OK" \
  || fail "self-signed EC certificate does not verify"
echo "openssl/libp11: EC, RSA PKCS#1, RSA-PSS signatures and a certificate verified by plain OpenSSL"
