#!/usr/bin/env bash
# p11-kit as a consumer: hsmux registered with a .module file made from
# examples/hsmux.module is listed by `p11-kit list-modules` with its token; the config path
# in `x-init-reserved` reaches hsmux as CK_C_INITIALIZE_ARGS.pReserved (the token label
# shown is one that only that config file names); the p11-kit proxy module serves the same
# token to pkcs11-tool, which signs with it (signature verified by plain OpenSSL).
# Usage: [MODULE=/path/to/module.so] conformance/p11kit.sh
#
# Where the .module file goes: p11-kit reads ~/.config/pkcs11/modules (from $HOME) only
# for non-root users; as root it reads /etc/pkcs11/modules and /usr/share/p11-kit/modules.
# To stay out of /etc, a root run preloads a tiny library that calls p11-kit's own
# p11_kit_override_system_files() (the hook its and GnuTLS's test suites use) to point the
# system module directories at a temp dir; when setpriv is available a root run also checks
# the per-user directory as user nobody.
source "$(dirname "$0")/lib.sh"
setup
command -v p11-kit >/dev/null || die "p11-kit is not installed (scripts/deps.sh)"
PROXY=${PROXY:-/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so}

name="hsmux-conformance"
moddir="$WORK/p11-modules"
mkdir -p "$moddir"

# module_file FILE MODULE [RESERVED]: examples/hsmux.module with our paths.
module_file() {
  if [ -n "${3:-}" ]; then
    sed -e "s|^module:.*|module: $2|" -e "s|^x-init-reserved:.*|x-init-reserved: $3|" \
      "$REPO/examples/hsmux.module" > "$1"
  else
    sed -e "s|^module:.*|module: $2|" -e '/^x-init-reserved:/d' "$REPO/examples/hsmux.module" > "$1"
  fi
  grep -q "^module: $2\$" "$1" || die "examples/hsmux.module has no 'module:' line"
}

# p11kit CMD...: run with the temp module directory in effect.
if [ "$(id -u)" -eq 0 ]; then
  command -v cc >/dev/null || die "a C compiler is needed for the p11-kit override shim"
  cat > "$WORK/p11kit-dirs.c" <<'C'
#include <stdlib.h>
void p11_kit_override_system_files(const char *system_conf, const char *user_conf,
                                   const char *package_modules, const char *system_modules,
                                   const char *user_modules);
__attribute__((constructor)) static void hsmux_test_p11kit_dirs(void) {
  const char *d = getenv("HSMUX_TEST_P11KIT_MODULES");
  const char *c = getenv("HSMUX_TEST_P11KIT_CONF");
  if (d && *d) p11_kit_override_system_files(c, c, d, d, d);
}
C
  cc -shared -fPIC -o "$WORK/p11kit-dirs.so" "$WORK/p11kit-dirs.c" -l:libp11-kit.so.0 \
    || die "building the p11-kit override shim"
  : > "$WORK/pkcs11.conf"
  p11kit() {
    HSMUX_TEST_P11KIT_MODULES="$moddir" HSMUX_TEST_P11KIT_CONF="$WORK/pkcs11.conf" \
      LD_PRELOAD="$WORK/p11kit-dirs.so${LD_PRELOAD:+:$LD_PRELOAD}" "$@"
  }
  note "running as root: module directory overridden to $moddir"
else
  moddir="$HOME/.config/pkcs11/modules"
  mkdir -p "$moddir"
  p11kit() { "$@"; }
  note "running as $(id -un): per-user module directory $moddir"
fi

# module_block OUTPUT NAME: the lines of NAME's entry in `p11-kit list-modules` output.
module_block() { awk -v n="$2:" '$1 == n {on = 1; print; next} /^[^ ]/ {on = 0} on' <<<"$1"; }

if [ "$TARGET" = hsmux ]; then
  # A config that exists only for this test, reachable only through x-init-reserved.
  unique="p11kit-$RANDOM$RANDOM"
  write_hsmux_config "$WORK/reserved.toml" "$unique" "$WORK/reserved-soft"
  unset HSMUX_CONFIG
  module_file "$moddir/$name.module" "$MODULE" "$WORK/reserved.toml"
  out=$(p11kit p11-kit list-modules 2>&1) || die "p11-kit list-modules" "$out"
  block=$(module_block "$out" "$name")
  if [ -n "$block" ]; then ok "p11-kit list-modules lists $name"; else die "p11-kit list-modules lists $name" "$out"; fi
  grep -q "token: $unique\$" <<<"$block" && ok "the token label comes from the x-init-reserved config ($unique)" \
    || not_ok "token $unique (from x-init-reserved) shown" "$block"
  grep -q 'library-manufacturer: hsmux' <<<"$block" && ok "library-manufacturer is hsmux" \
    || not_ok "library-manufacturer is hsmux" "$block"

  # Without x-init-reserved (and no config anywhere in the temp HOME) the module falls back
  # to its embedded default slot, whose store lives under $XDG_DATA_HOME.
  if [ ! -e /etc/hsmux/hsmux.toml ]; then
    module_file "$moddir/$name.module" "$MODULE"
    out=$(p11kit p11-kit list-modules 2>&1) || die "p11-kit list-modules" "$out"
    module_block "$out" "$name" | grep -q 'token: hsmux-soft$' \
      && ok "without x-init-reserved the embedded default slot (hsmux-soft) is listed" \
      || not_ok "embedded default slot listed" "$out"
    module_file "$moddir/$name.module" "$MODULE" "$WORK/reserved.toml"
  else
    note "/etc/hsmux/hsmux.toml exists: embedded-default check skipped"
  fi

  # A bad config path in x-init-reserved: the module must fail to initialize (p11-kit
  # drops it) rather than silently serve something else.
  module_file "$moddir/bad.module" "$MODULE" "$WORK/does-not-exist.toml"
  out=$(p11kit p11-kit list-modules 2>&1) || true
  if module_block "$out" bad | grep -q 'token:'; then
    not_ok "a missing x-init-reserved config makes C_Initialize fail" "$(module_block "$out" bad)"
  else
    ok "a missing x-init-reserved config makes C_Initialize fail (p11-kit lists no token)"
  fi
  rm -f "$moddir/bad.module"
  token=$unique
  # Prepare the token with pkcs11-tool on the module itself, pointed at the same config.
  P0=(env HSMUX_CONFIG="$WORK/reserved.toml" pkcs11-tool --module "$MODULE")
  P=("${P0[@]}" --token-label "$token")
else
  # SoftHSM reads SOFTHSM2_CONF; it rejects a non-NULL pReserved (CKR_ARGUMENTS_BAD).
  module_file "$moddir/$name.module" "$MODULE" "$WORK/ignored.toml"
  out=$(p11kit p11-kit list-modules 2>&1) || true
  if module_block "$out" "$name" | grep -q 'token:'; then
    note "SoftHSM accepted x-init-reserved"
  else
    known "SoftHSM refuses a non-NULL pReserved, so with x-init-reserved p11-kit drops it"
  fi
  module_file "$moddir/$name.module" "$MODULE"
  token=$LABEL
fi

LABEL=$token
PL=("${P[@]}" --login --pin "$PIN")
init_token
keygen_ec 02 ec1
out=$(p11kit p11-kit list-modules 2>&1) || die "p11-kit list-modules" "$out"
module_block "$out" "$name" | grep -q "token: $token\$" && ok "p11-kit lists the initialized token $token" \
  || not_ok "p11-kit lists the initialized token $token" "$out"

# The proxy: a consumer loading p11-kit-proxy.so sees and uses the token.
if [ -f "$PROXY" ]; then
  X=(pkcs11-tool --module "$PROXY" --token-label "$token")
  out=$(p11kit "${X[@]}" -L 2>&1) || true
  grep -q "token label *: $token\$" <<<"$out" && ok "p11-kit-proxy.so shows the token to pkcs11-tool" \
    || not_ok "p11-kit-proxy.so shows the token" "$out"
  echo "through the p11-kit proxy" > "$WORK/msg"
  openssl_plain dgst -sha256 -binary -out "$WORK/msg.sha256" "$WORK/msg"
  out=$(p11kit "${X[@]}" --login --pin "$PIN" --sign --id 02 -m ECDSA --signature-format openssl \
    -i "$WORK/msg.sha256" -o "$WORK/sig" 2>&1) && ok "ECDSA signature through p11-kit-proxy.so" \
    || not_ok "ECDSA signature through p11-kit-proxy.so" "$out"
  out=$("${P[@]}" --read-object --type pubkey --id 02 -o "$WORK/ec.der" 2>&1) || die "read public key" "$out"
  check "plain openssl verifies the signature made through the proxy" \
    openssl_plain dgst -sha256 -verify "$WORK/ec.der" -keyform DER -signature "$WORK/sig" "$WORK/msg"
else
  note "no $PROXY: proxy checks skipped"
fi

# As root, also the per-user directory as an unprivileged user (what most users do).
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && [ "$TARGET" = hsmux ]; then
  uhome="$WORK/userhome"
  mkdir -p "$uhome/.config/pkcs11/modules" "$WORK/user-soft"
  write_hsmux_config "$WORK/user.toml" "user-$unique" "$WORK/user-soft"
  module_file "$uhome/.config/pkcs11/modules/$name.module" "$MODULE" "$WORK/user.toml"
  chmod 755 "$WORK" "$uhome" "$uhome/.config" "$uhome/.config/pkcs11" "$uhome/.config/pkcs11/modules"
  chmod 644 "$WORK/user.toml" "$uhome/.config/pkcs11/modules/$name.module"
  # The user's own store: theirs, private (hsmux refuses a store others can write).
  chown 65534:65534 "$WORK/user-soft"
  chmod 700 "$WORK/user-soft"
  # The module must be reachable by nobody too.
  if setpriv --reuid=65534 --regid=65534 --clear-groups test -r "$MODULE"; then
    out=$(env -i PATH="$PATH" HOME="$uhome" XDG_DATA_HOME="$uhome/.local/share" \
      setpriv --reuid=65534 --regid=65534 --clear-groups p11-kit list-modules 2>&1) || true
    module_block "$out" "$name" | grep -q "token: user-$unique\$" \
      && ok "a non-root user's ~/.config/pkcs11/modules registration works" \
      || not_ok "a non-root user's ~/.config/pkcs11/modules registration works" "$out"
  else
    note "$MODULE is not readable by nobody: per-user check skipped"
  fi
fi
