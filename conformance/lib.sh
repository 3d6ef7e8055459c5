# Shared set-up for the consumer tests: a throw-away HOME, an hsmux config with one soft
# slot, and helpers to initialize the token and make keys with pkcs11-tool.
# Source it; it sets MODULE, HSMUX_CONFIG, WORK and P (the pkcs11-tool command).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
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
