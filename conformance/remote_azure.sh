#!/usr/bin/env bash
# Consumers against an azure-kv slot: conformance/azurekv_server.py playing a Managed HSM
# (keys REST 7.5 over HTTPS with its own CA, Entra ID's token endpoint) with keys ec1
# (EC-HSM P-256), rsa1 (RSA-HSM 2048) and aes1 (oct-HSM 256) behind hsmux. pkcs11-tool
# lists and uses them; OpenSSL with the libp11 engine signs by RFC 7512 URI and makes a
# certificate signing request with the EC-HSM key; every signature is verified by plain
# OpenSSL, and an OAEP ciphertext made by plain OpenSSL is decrypted through the HSM.
# C_WrapKey/C_UnwrapKey (AES-KW with aes1, RSA-OAEP-256 with rsa1) run through
# python-pkcs11 (conformance/azurekv_wrap.py), checked by the cryptography package.
# Usage: conformance/remote_azure.sh   (the module must be built)
source "$(dirname "$0")/lib.sh"
[ "$TARGET" = hsmux ] || { note "a remote slot is hsmux's alone: nothing to run on $TARGET"; exit 0; }
[ -f "$MODULE" ] || die "module $MODULE not found (cargo build --release first)"
PY=$REPO/.venv/bin/python
[ -x "$PY" ] || die "python not found at $PY (scripts/deps.sh makes the venv with cryptography)"
command -v pkcs11-tool >/dev/null || die "pkcs11-tool not installed (scripts/deps.sh)"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
IMDS=$(free_port)
SRV=$WORK/azure
mkdir -p "$SRV"
cat > "$SRV/seed.json" <<'JSON'
{"keys": [{"name": "ec1", "kty": "EC-HSM", "crv": "P-256"},
          {"name": "rsa1", "kty": "RSA-HSM", "size": 2048},
          {"name": "aes1", "kty": "oct-HSM", "size": 256}]}
JSON
"$PY" "$REPO/conformance/azurekv_server.py" --port "$PORT" --imds-port "$IMDS" --dir "$SRV" \
  --kind managedhsm --seed "$SRV/seed.json" > "$WORK/azure.log" 2>&1 &
SRV_PID=$!
on_exit "kill $SRV_PID 2>/dev/null; wait $SRV_PID 2>/dev/null"
for _ in $(seq 200); do [ -f "$SRV/ready" ] && break; sleep 0.1; done
[ -f "$SRV/ready" ] || die "azurekv_server.py did not start" "$(cat "$WORK/azure.log")"
note "Managed HSM stand-in on https://127.0.0.1:$PORT (pid $SRV_PID)"

LABEL=azure
export HSMUX_CONFIG="$WORK/hsmux.toml" HSMUX_TEST_AZURE_SECRET=test-client-secret
cat > "$HSMUX_CONFIG" <<TOML
[[slot]]
label = "$LABEL"
backend = "azure-kv"
vault = "https://127.0.0.1:$PORT"
ca_file = "$SRV/ca.pem"
keys = ["ec1", "rsa1", "aes1"]
auth = { method = "client_secret", tenant = "00000000-0000-0000-0000-0000000000aa", client_id = "11111111-1111-1111-1111-1111111111bb", secret = { env = "HSMUX_TEST_AZURE_SECRET" }, authority_host = "https://127.0.0.1:$PORT" }
timeout_ms = 5000
TOML
P=(pkcs11-tool --module "$MODULE" --token-label "$LABEL")
PL=("${P[@]}" --login --pin "$PIN")

check_remote_listing azure ec1 rsa1 aes1
# CKA_ID is name/version; pkcs11-tool prints it in hex.
id_of() { awk -v k="$1" '/label:/ { l = $2 } /ID:/ && l == k { print $2; exit }' <<<"$LISTING"; }
EC_ID=$(id_of ec1)
RSA_ID=$(id_of rsa1)
[ -n "$EC_ID" ] && [ -n "$RSA_ID" ] && ok "the keys have CKA_IDs" || die "no CKA_ID for ec1/rsa1" "$LISTING"
# The vault is at 127.0.0.1: which service it is comes from its 401 challenge.
out2=$("$REPO/target/release/hsmux" check 2>&1) || true
grep -q "service: Managed HSM https://127.0.0.1:$PORT" <<<"$out2" && ok "hsmux check says Managed HSM" \
  || not_ok "hsmux check says Managed HSM" "$out2"

check_remote_signatures azure "$EC_ID" "$RSA_ID" 384

check_oaep_decrypt "an OAEP-SHA256 ciphertext from plain OpenSSL decrypts through the HSM" "$RSA_ID" "$WORK/rsa.pem"

# OpenSSL with the libp11 engine, keys by URI: a CSR signed by the EC-HSM key.
write_openssl_cnf
openssl_plain dgst -sha256 -binary -out "$WORK/hash" "$WORK/msg"
uri() { echo "pkcs11:token=$LABEL;object=$1;type=private"; }
E=(-engine pkcs11 -keyform engine)
if out=$(openssl req -new "${E[@]}" -key "$(uri ec1)" -subj "/CN=azure-ec" -sha256 \
  -out "$WORK/ec.csr" 2>&1); then
  ok "openssl req -new makes a CSR with the EC-HSM key (libp11 engine)"
  out=$(openssl_plain req -in "$WORK/ec.csr" -verify -noout 2>&1) \
    && grep -q "verify OK" <<<"$out" && ok "the CSR's signature verifies with plain OpenSSL" \
    || not_ok "the CSR's signature verifies with plain OpenSSL" "$out"
  csr_pub=$(openssl_plain req -in "$WORK/ec.csr" -pubkey -noout | openssl_plain pkey -pubin -outform DER | od -An -tx1)
  key_pub=$(openssl_plain pkey -pubin -in "$WORK/ec.pem" -outform DER | od -An -tx1)
  [ "$csr_pub" = "$key_pub" ] && ok "the CSR carries the EC-HSM key's public key" \
    || not_ok "the CSR carries the EC-HSM key's public key"
else
  not_ok "openssl req -new makes a CSR with the EC-HSM key (libp11 engine)" "$out"
fi
check_engine_sign "openssl pkeyutl -sign through the libp11 engine with the EC-HSM key" \
  "$(uri ec1)" "$WORK/ec.pem"
unset OPENSSL_CONF

# Wrap and unwrap: pkcs11-tool's --unwrap makes token objects (a remote slot holds only
# session ones) and its --encrypt has no AES-KEY-WRAP, so python-pkcs11 calls them.
if "$PY" -c 'import pkcs11' 2>/dev/null; then
  rc=0
  out=$("$PY" "$REPO/conformance/azurekv_wrap.py" "$MODULE" "$LABEL" "$PIN" "$IMDS" 2>&1) || rc=$?
  while IFS= read -r line; do
    case $line in
      "ok - "*) ok "${line#ok - }" ;;
      "not ok - "*) not_ok "${line#not ok - }" ;;
    esac
  done <<<"$out"
  [ $rc = 0 ] || grep -q "^not ok" <<<"$out" || not_ok "azurekv_wrap.py ran" "$out"
else
  not_ok "python-pkcs11 in the venv for the wrap/unwrap step (scripts/deps.sh installs it)"
fi

# The server gone: calls fail within the deadline, with a device error, no hang.
check_server_gone "$SRV_PID" "$EC_ID"
