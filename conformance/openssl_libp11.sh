#!/usr/bin/env bash
# OpenSSL 3 with the libp11 engine (examples/openssl-libp11.cnf, MODULE_PATH = $MODULE)
# signs with an EC P-256 and an RSA-2048 key of the token, addressed by RFC 7512 URIs:
#   openssl pkeyutl -sign over a digest made by `openssl dgst`, openssl dgst -sha256 -sign,
#   RSA-PSS through pkeyutl, and self-signed certificates from openssl req -x509.
# The public keys are exported by export_pubkey (lib.sh: RSA with pkcs11-tool --read-object,
# EC through the engine) and every signature is verified by plain OpenSSL (no engine, no config).
# Usage: [MODULE=/path/to/module.so] conformance/openssl_libp11.sh
source "$(dirname "$0")/lib.sh"
setup
init_token
keygen_ec 02 ec1
keygen_rsa 03 rsa1
export_pubkey 02 "$WORK/ec.pem"
export_pubkey 03 "$WORK/rsa.pem"
openssl_plain pkey -pubin -in "$WORK/ec.pem" -noout -text | grep -q 'prime256v1' \
  && ok "exported EC public key is P-256" || not_ok "exported EC public key is P-256"
openssl_plain pkey -pubin -in "$WORK/rsa.pem" -noout -text | grep -q 'Public-Key: (2048 bit)' \
  && ok "exported RSA public key is 2048-bit" || not_ok "exported RSA public key is 2048-bit"

write_openssl_cnf
head -c 1000 /dev/urandom > "$WORK/msg"
openssl_plain dgst -sha256 -binary -out "$WORK/hash" "$WORK/msg"
uri() { echo "pkcs11:token=$LABEL;object=$1;type=private"; }
E=(-engine pkcs11 -keyform engine)

# engine_sign DESC CMD...: run an engine command; record failure with its output.
engine_sign() {
  local desc=$1 out; shift
  if out=$("$@" 2>&1); then ok "$desc"; return 0; fi
  not_ok "$desc" "$out"; return 1
}

# EC P-256
engine_sign "ECDSA: openssl pkeyutl -sign over a SHA-256 digest (engine, pkcs11: URI)" \
  openssl pkeyutl "${E[@]}" -inkey "$(uri ec1)" -sign -in "$WORK/hash" -out "$WORK/ec-pkeyutl.sig" \
  && verified "ECDSA pkeyutl signature verified by plain openssl pkeyutl" \
    openssl_plain pkeyutl -verify -pubin -inkey "$WORK/ec.pem" -in "$WORK/hash" -sigfile "$WORK/ec-pkeyutl.sig"
engine_sign "ECDSA: openssl dgst -sha256 -sign (engine)" \
  openssl dgst -sha256 "${E[@]}" -sign "$(uri ec1)" -out "$WORK/ec-dgst.sig" "$WORK/msg" \
  && verified "ECDSA dgst signature verified by plain openssl dgst -verify" \
    openssl_plain dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/ec-dgst.sig" "$WORK/msg"

# RSA-2048, PKCS#1 v1.5
engine_sign "RSA: openssl pkeyutl -sign (PKCS#1 v1.5, digest sha256) over a digest (engine)" \
  openssl pkeyutl "${E[@]}" -inkey "$(uri rsa1)" -sign -pkeyopt digest:sha256 \
  -in "$WORK/hash" -out "$WORK/rsa-pkeyutl.sig" \
  && verified "RSA pkeyutl signature verified by plain openssl dgst -verify" \
    openssl_plain dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/rsa-pkeyutl.sig" "$WORK/msg"
engine_sign "RSA: openssl dgst -sha256 -sign (engine)" \
  openssl dgst -sha256 "${E[@]}" -sign "$(uri rsa1)" -out "$WORK/rsa-dgst.sig" "$WORK/msg" \
  && verified "RSA dgst signature verified by plain openssl dgst -verify" \
    openssl_plain dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/rsa-dgst.sig" "$WORK/msg"

# RSA-PSS (SHA-256, MGF1-SHA256, salt 32)
PSS=(-pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32)
engine_sign "RSA-PSS: openssl pkeyutl -sign (engine)" \
  openssl pkeyutl "${E[@]}" -inkey "$(uri rsa1)" -sign "${PSS[@]}" -in "$WORK/hash" -out "$WORK/pss.sig" \
  && verified "RSA-PSS signature verified by plain openssl pkeyutl" \
    openssl_plain pkeyutl -verify -pubin -inkey "$WORK/rsa.pem" "${PSS[@]}" -in "$WORK/hash" -sigfile "$WORK/pss.sig"

# Self-signed certificates (openssl req -x509 through the engine), checked by plain openssl:
# the signature verifies and the certificate carries the token's public key.
for k in ec1 rsa1; do
  pem=$WORK/ec.pem; [ "$k" = rsa1 ] && pem=$WORK/rsa.pem
  if engine_sign "$k: openssl req -x509 -sha256 (engine) makes a self-signed certificate" \
    openssl req -new -x509 "${E[@]}" -key "$(uri "$k")" -subj "/CN=$k" -days 2 -sha256 -out "$WORK/$k.crt"; then
    out=$(openssl_plain verify -CAfile "$WORK/$k.crt" "$WORK/$k.crt" 2>&1) && grep -q ': OK' <<<"$out" \
      && ok "$k certificate: plain openssl verify OK" || not_ok "$k certificate verifies" "$out"
    if cmp -s <(openssl_plain x509 -in "$WORK/$k.crt" -noout -pubkey) "$pem"; then
      ok "$k certificate holds the token's public key"
    else
      not_ok "$k certificate holds the token's public key"
    fi
  fi
done

# A wrong PIN must be refused, not ignored (and not crash).
sed -i "s|^PIN = .*|PIN = 9999|" "$OPENSSL_CONF"
rc=0
out=$( (openssl pkeyutl "${E[@]}" -inkey "$(uri ec1)" -sign -in "$WORK/hash" -out "$WORK/bad.sig") 2>&1 ) || rc=$?
if [ "$rc" -ge 1 ] && [ "$rc" -lt 128 ] && [ ! -s "$WORK/bad.sig" ]; then
  ok "a wrong PIN in the engine config is refused"
elif [ "$rc" -ge 128 ] && [ "$TARGET" = softhsm ]; then
  known "libp11 with SoftHSM crashes (signal $((rc - 128))) on a wrong PIN instead of failing cleanly"
else
  not_ok "a wrong PIN in the engine config is refused (exit $rc)" "$out"
fi
