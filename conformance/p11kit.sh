#!/usr/bin/env bash
# p11-kit: hsmux registered with a .module file (as examples/hsmux.module) is listed by
# `p11-kit list-modules`, and the config path given in `x-init-reserved` reaches hsmux
# (the token label seen is the one only that config file names).
source "$(dirname "$0")/lib.sh"
command -v p11-kit >/dev/null || fail "p11-kit is not installed"

# A config that exists only for this test, found only through x-init-reserved.
unique="p11kit-$RANDOM$RANDOM"
cat > "$WORK/reserved.toml" <<TOML
[[slot]]
label = "$unique"
backend = "soft"
path = "$WORK/reserved-soft"
kdf_iterations = 1000
TOML
unset HSMUX_CONFIG

name="hsmux-test-$$"
if [ "$(id -u)" -eq 0 ]; then
  # As root p11-kit reads only the system directory.
  dir=/etc/pkcs11/modules
else
  dir="$XDG_CONFIG_HOME/pkcs11/modules"
fi
mkdir -p "$dir"
sed -e "s|^module:.*|module: $MODULE|" -e "s|^x-init-reserved:.*|x-init-reserved: $WORK/reserved.toml|" \
  "$REPO/examples/hsmux.module" > "$dir/$name.module"
trap 'rm -f "$dir/$name.module"; rm -rf "$WORK"' EXIT

out=$(p11-kit list-modules 2>&1) || fail "p11-kit list-modules failed: $out"
echo "$out" | grep -q "^$name:" || fail "module $name not listed: $out"
echo "$out" | sed -n "/^$name:/,/^[^ ]/p" | grep -q "token: $unique" \
  || fail "token label $unique (from x-init-reserved) not shown: $out"

# The proxy module serves the same token to a consumer.
proxy=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
if [ -f "$proxy" ]; then
  pkcs11-tool --module "$proxy" -L 2>/dev/null | grep -q "$WORK/reserved-soft" || fail "p11-kit-proxy does not show the hsmux token"
fi
echo "p11-kit: module listed, token $unique seen through x-init-reserved and the proxy"
