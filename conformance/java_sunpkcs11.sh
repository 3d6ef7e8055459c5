#!/usr/bin/env bash
# Java SunPKCS11 as a consumer (config from examples/sunpkcs11.cfg: name, library,
# slotListIndex = 0):
#  - EC P-256 and RSA-2048 keys made with pkcs11-tool, self-signed certificates made with
#    OpenSSL + libp11 and written next to them (same CKA_ID) with pkcs11-tool;
#  - `keytool -list -storetype PKCS11` shows both entries;
#  - `keytool -genkeypair -storetype PKCS11` creates a third key pair and certificate on
#    the token through SunPKCS11;
#  - conformance/java/SignTest.java signs with every key entry (SHA256withECDSA,
#    SHA256withRSA) through the token and verifies with SunEC/SunRsaSign; the script
#    verifies the same signatures again with plain OpenSSL and the public keys read from
#    the token with pkcs11-tool.
# Usage: [MODULE=/path/to/module.so] conformance/java_sunpkcs11.sh
source "$(dirname "$0")/lib.sh"
setup
command -v javac >/dev/null && command -v keytool >/dev/null || die "no JDK (javac, keytool): scripts/deps.sh"
init_token
keygen_ec 02 ec1
keygen_rsa 03 rsa1
write_openssl_cnf
make_cert ec1 02
make_cert rsa1 03
unset OPENSSL_CONF
export_pubkey 02 "$WORK/ec1.pub.pem"
export_pubkey 03 "$WORK/rsa1.pub.pem"

cfg="$WORK/sunpkcs11.cfg"
sed -e "s|^library *=.*|library = $MODULE|" "$REPO/examples/sunpkcs11.cfg" > "$cfg"
grep -q "^library = $MODULE\$" "$cfg" || die "examples/sunpkcs11.cfg has no library line"
KT=(keytool -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 -providerArg "$cfg"
  -storepass "$PIN")

out=$("${KT[@]}" -list 2>&1) || die "keytool -list -storetype PKCS11" "$out"
for a in ec1 rsa1; do
  grep -q "^$a, PrivateKeyEntry" <<<"$out" && ok "keytool -list shows $a as a PrivateKeyEntry" \
    || not_ok "keytool -list shows $a as a PrivateKeyEntry" "$out"
done

# keytool generates a key pair and a self-signed certificate on the token.
out=$("${KT[@]}" -genkeypair -alias javaec -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA \
  -dname CN=javaec -validity 2 2>&1) && ok "keytool -genkeypair -storetype PKCS11 (EC P-256) on the token" \
  || not_ok "keytool -genkeypair -storetype PKCS11 (EC P-256)" "$out"
out=$("${KT[@]}" -list 2>&1) || true
grep -q "^javaec, PrivateKeyEntry" <<<"$out" && ok "keytool -list shows the generated javaec entry" \
  || not_ok "keytool -list shows javaec" "$out"
n=$("${PL[@]}" --list-objects --type privkey 2>/dev/null | grep -c 'Private Key Object' || true)
[ "$n" -eq 3 ] && ok "pkcs11-tool sees 3 private keys (2 from pkcs11-tool, 1 from keytool)" \
  || not_ok "pkcs11-tool sees 3 private keys (found $n)"

mkdir -p "$WORK/classes" "$WORK/sigs"
out=$(javac -d "$WORK/classes" "$REPO/conformance/java/SignTest.java" 2>&1) || die "javac SignTest.java" "$out"
if out=$(java -cp "$WORK/classes" SignTest "$cfg" "$PIN" "$WORK/sigs" 2>&1); then
  ok "SignTest: SunPKCS11 KeyStore loads with the PIN and signs with every key entry"
  sed 's/^/    /' <<<"$out"
else
  not_ok "SignTest ran" "$out"
fi
for a in ec1:SHA256withECDSA:SunEC rsa1:SHA256withRSA:SunRsaSign javaec:SHA256withECDSA:SunEC; do
  IFS=: read -r alias alg prov <<<"$a"
  grep -q "^$alias: $alg signature verified by $prov" <<<"$out" \
    && ok "$alias: $alg through SunPKCS11, verified by $prov" || not_ok "$alias: $alg verified by $prov"
done
# The same signatures, checked by OpenSSL with the public keys read from the token.
for a in ec1 rsa1; do
  check "$a: the Java signature verifies with plain OpenSSL and the token's public key" \
    openssl_plain dgst -sha256 -verify "$WORK/$a.pub.pem" -signature "$WORK/sigs/$a.sig" "$WORK/sigs/$a.msg"
done

# A wrong PIN is refused by the KeyStore.
if out=$(keytool -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 -providerArg "$cfg" \
  -storepass 9999 -list 2>&1); then
  not_ok "keytool with a wrong PIN fails" "$out"
else
  ok "keytool with a wrong PIN fails"
fi
