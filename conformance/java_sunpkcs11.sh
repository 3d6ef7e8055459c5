#!/usr/bin/env bash
# Java SunPKCS11: keytool lists the token's entries and a small Java program signs with the
# EC and RSA keys through hsmux; Java's own providers verify the signatures.
source "$(dirname "$0")/lib.sh"
command -v javac >/dev/null || fail "no JDK (javac) installed"
[ -f "$ENGINE" ] || fail "libp11 engine not installed (needed to make the certificates)"
init_token
make_keys
write_openssl_cnf
make_cert ec1 02
make_cert rsa1 03
unset OPENSSL_CONF

cat > "$WORK/sunpkcs11.cfg" <<CFG
name = hsmux
library = $MODULE
slotListIndex = 0
CFG
out=$(keytool -list -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 \
  -providerArg "$WORK/sunpkcs11.cfg" -storepass "$PIN" 2>&1) || fail "keytool -list failed: $out"
echo "$out" | grep -q "^ec1, PrivateKeyEntry" || fail "keytool does not list ec1: $out"
echo "$out" | grep -q "^rsa1, PrivateKeyEntry" || fail "keytool does not list rsa1: $out"

mkdir -p "$WORK/classes"
javac -d "$WORK/classes" "$REPO/conformance/java/SignTest.java"
out=$(java -cp "$WORK/classes" SignTest "$WORK/sunpkcs11.cfg" "$PIN" 2>&1) || fail "Java signing failed: $out"
echo "$out"
echo "$out" | grep -q "ec1: SHA256withECDSA signature verified" || fail "no verified EC signature"
echo "$out" | grep -q "rsa1: SHA256withRSA signature verified" || fail "no verified RSA signature"
echo "java: keytool lists the keys, SunPKCS11 signs, SunEC/SunRsaSign verify"
