# Shared set-up for the consumer tests: a throw-away HOME, an hsmux config with one soft
# slot, and helpers to initialize the token and make keys with pkcs11-tool.
# Source it; it sets MODULE, HSMUX_CONFIG, WORK and P (the pkcs11-tool command).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
HOME_REAL=$HOME
# Keep the real toolchain when HOME moves (rustup and cargo find theirs through HOME).
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME_REAL/.rustup} CARGO_HOME=${CARGO_HOME:-$HOME_REAL/.cargo}
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" XDG_DATA_HOME="$WORK/home/.local/share"
mkdir -p "$HOME"
MODULE="$REPO/target/release/libhsmux.so"
[ -f "$MODULE" ] || { echo "build first: cargo build --release"; exit 1; }
SO_PIN=12345678
PIN=1234
LABEL=${LABEL:-hsmux-soft}
export HSMUX_CONFIG="$WORK/hsmux.toml"
cat > "$HSMUX_CONFIG" <<TOML
[[slot]]
label = "$LABEL"
backend = "soft"
path = "$WORK/soft"
kdf_iterations = 1000
TOML
P=(pkcs11-tool --module "$MODULE")

fail() { echo "FAIL: $*"; exit 1; }

init_token() {
  "${P[@]}" --init-token --label "$LABEL" --so-pin "$SO_PIN" >/dev/null
  "${P[@]}" --init-pin --so-pin "$SO_PIN" --pin "$PIN" --login --login-type so >/dev/null
}

# The four key kinds the issue names: AES, EC P-256, RSA-2048, an HMAC secret.
make_keys() {
  "${P[@]}" --login --pin "$PIN" --keygen --key-type AES:32 --id 01 --label aes1 >/dev/null 2>&1
  "${P[@]}" --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --id 02 --label ec1 >/dev/null 2>&1
  "${P[@]}" --login --pin "$PIN" --keypairgen --key-type rsa:2048 --id 03 --label rsa1 >/dev/null 2>&1
  "${P[@]}" --login --pin "$PIN" --keygen --key-type GENERIC:32 --id 04 --label hmac1 >/dev/null 2>&1
}

ENGINE=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so

# An openssl.cnf that loads the libp11 engine with hsmux as its module.
write_openssl_cnf() {
  sed -e "s|@ENGINE@|$ENGINE|" -e "s|@MODULE@|$MODULE|" -e "s|@PIN@|$PIN|" \
    "$REPO/examples/openssl-libp11.cnf" > "$WORK/openssl.cnf"
  export OPENSSL_CONF="$WORK/openssl.cnf"
}

# A self-signed certificate for key $1 (label) with id $2, made by OpenSSL through the
# engine and stored on the token next to the key (Java lists only keys with certificates).
make_cert() {
  local label=$1 id=$2
  openssl req -new -x509 -engine pkcs11 -keyform engine \
    -key "pkcs11:token=$LABEL;object=$label;type=private" -subj "/CN=$label" -days 2 \
    -out "$WORK/$label.crt" 2>/dev/null
  openssl x509 -in "$WORK/$label.crt" -outform DER -out "$WORK/$label.crt.der"
  "${P[@]}" --login --pin "$PIN" --write-object "$WORK/$label.crt.der" --type cert --id "$id" --label "$label" >/dev/null 2>&1
}
