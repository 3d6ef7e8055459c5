#!/usr/bin/env bash
# Installs what the tests need on Debian bookworm, idempotently: SoftHSMv2 (the reference
# token), OpenSC's pkcs11-tool, p11-kit, OpenSSL's libp11 engine, and a JDK for SunPKCS11.
set -euo pipefail

want=()
command -v softhsm2-util >/dev/null || want+=(softhsm2)
command -v pkcs11-tool >/dev/null || want+=(opensc)
command -v p11-kit >/dev/null || want+=(p11-kit)
[ -e /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so ] || want+=(libengine-pkcs11-openssl)
command -v openssl >/dev/null || want+=(openssl)
command -v javac >/dev/null || want+=(openjdk-17-jdk-headless)
command -v cc >/dev/null || want+=(gcc)
# benches/c_abi.rs builds kryoptic against the system OpenSSL (headers, bindgen's libclang)
dpkg -s libssl-dev >/dev/null 2>&1 || want+=(libssl-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || want+=(libclang-dev)
command -v pkg-config >/dev/null || want+=(pkg-config)

if [ ${#want[@]} -gt 0 ]; then
  echo "deps: installing ${want[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

# rustfmt and clippy: the test command checks formatting and lints (rustup toolchains
# do not always carry them).
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

# The Python side (test servers, OpenBao's `bao` binary, moto): a venv in the checkout.
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv"
req="$(dirname "$0")/requirements.txt"
if [ ! -x "$venv/bin/python" ]; then
  echo "deps: creating $venv"
  python3 -m venv "$venv" || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  }
fi
if ! cmp -s "$req" "$venv/.requirements.installed"; then
  echo "deps: installing $req into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.requirements.installed"
fi

# The packaged-consumer tests (conformance/package.sh): GnuTLS's p11tool/certtool, and
# OpenSSL 3's pkcs11-provider, which bookworm has only in bookworm-backports (added as an
# apt source when the package cannot be found otherwise).
want=()
command -v p11tool >/dev/null || want+=(gnutls-bin)
[ -e /usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so ] || want+=(pkcs11-provider)
if [ ${#want[@]} -gt 0 ]; then
  echo "deps: installing ${want[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  if ! apt-cache policy pkcs11-provider 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" \
      | $sudo tee /etc/apt/sources.list.d/hsmux-bookworm-backports.list >/dev/null
    $sudo apt-get update -qq
  fi
  $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi
