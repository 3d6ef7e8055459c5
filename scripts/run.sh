#!/usr/bin/env bash
# Builds libhsmux.so and shows it serving pkcs11-tool from the embedded default
# configuration (one soft slot under $XDG_DATA_HOME/hsmux/soft), with no config file.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pkcs11-tool >/dev/null || ./scripts/deps.sh
cargo build --release --quiet
M="$PWD/target/release/libhsmux.so"
pkcs11-tool --module "$M" --show-info
pkcs11-tool --module "$M" --list-slots
pkcs11-tool --module "$M" --list-mechanisms
echo
echo "module: $M"
echo "next:   pkcs11-tool --module $M --init-token --label hsmux-soft --so-pin 12345678"
