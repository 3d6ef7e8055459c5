#!/usr/bin/env bash
# Builds the fault-injecting PKCS#11 wrapper (faultwrap.c) as OUTDIR/libfaultwrap.so and
# prints that path. Compiler messages go to stderr; the build is warning-free with
# -Wall -Wextra, so any output there is news.
#   conformance/faultwrap/build.sh OUTDIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
OUT="$(cd "$1" && pwd)/libfaultwrap.so"
cc -shared -fPIC -O2 -Wall -Wextra -I"$SRC" -I"$SRC/../faulty" \
  -o "$OUT" "$SRC/faultwrap.c" -ldl -lpthread
echo "$OUT"
