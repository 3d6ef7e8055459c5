#!/usr/bin/env bash
# Prints the path of a promtool, unpacking Debian's `prometheus` package into target/tools
# the first time (apt-get download + dpkg-deb -x: nothing is installed, no service starts).
# Exit 1 with the reason on stderr when none can be had. Used by conformance/package.sh
# (promtool check metrics) and conformance/dashboards.sh (check/test rules).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tool=$REPO/target/tools/usr/bin/promtool
if [ ! -x "$tool" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) \
    || { echo "apt-get download prometheus failed" >&2; exit 1; }
  mkdir -p "$REPO/target/tools"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$REPO/target/tools"
fi
echo "$tool"
