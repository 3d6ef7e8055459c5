#!/usr/bin/env bash
# Builds the Debian package target/debian/hsmux_<version>-1_amd64.deb (and its
# hsmux-dbgsym .ddeb with the debug info, which Debian keeps out of the main package) with
# cargo-deb, installing cargo-deb first if it is missing. The man pages and shell
# completions come from the built `hsmux` itself (its clap definitions), into target/pkg/.
# Prints the path of the .deb as its last line.
# Usage: scripts/package.sh [--no-build]   (--no-build: reuse target/release as it is)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  echo "package: installing cargo-deb" >&2
  cargo install cargo-deb --locked --quiet
fi
[ "${1:-}" = "--no-build" ] || cargo build --release --quiet

rm -rf target/pkg
mkdir -p target/pkg/completions
target/release/hsmux man target/pkg/man >&2
gzip -9n target/pkg/man/*
target/release/hsmux completions bash > target/pkg/completions/hsmux.bash
target/release/hsmux completions zsh > target/pkg/completions/_hsmux
target/release/hsmux completions fish > target/pkg/completions/hsmux.fish

# The .so and the CLI are stripped into the package; their debug info goes to the dbgsym
# package (compressed, in /usr/lib/debug/.build-id/, found by gdb through the build id).
cargo deb --no-build --quiet --dbgsym --compress-debug-symbols=zlib --output target/debian >&2
ls -t target/debian/hsmux_*_amd64.deb | head -n 1
