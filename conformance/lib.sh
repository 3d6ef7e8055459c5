# shellcheck shell=bash
# Shared set-up for the consumer conformance tests. Source it, then call `setup`.
#
# The module under test is $MODULE (default: the repo's target/release/libhsmux.so).
# A MODULE whose path contains "softhsm" is SoftHSMv2 (the reference token the tests were
# developed against); MODULE=behind is SoftHSMv2 behind hsmux's module backend (what
# softhsm-compat/ compares with SoftHSM directly); anything else is taken to be hsmux:
#   hsmux:    setup_hsmux writes a config with one soft slot and exports HSMUX_CONFIG
#   SoftHSM:  setup_softhsm writes a SOFTHSM2_CONF with a token directory and exports it
#   behind:   setup_behind does both: a SoftHSM token (made with softhsm2-util, label
#             $LABEL) and an hsmux config whose one slot is that token, chosen by serial
#             (C_InitToken renames a token but keeps its serial); MODULE becomes a link to
#             libhsmux.so under a path that contains "softhsm", so that suites with
#             SoftHSM quirks (the cryptoki crate's) expect from it what SoftHSM does
# Either way the test runs in its own temp dir ($WORK, removed at exit) with HOME,
# XDG_CONFIG_HOME and XDG_DATA_HOME inside it, so nothing depends on the caller's $HOME.
#
# Accounting: `check DESC CMD...`, `ok DESC`, `not_ok DESC [DETAIL]`, `die DESC [DETAIL]`
# (records a failure and stops), `known DESC` (a documented deviation of the reference
# module, printed but not counted as a failure). At exit the script prints
# "<test> on <target>: N checks passed, N failed" and, when $CONFORMANCE_RESULTS names a
# file, appends "<test> <target> <passed> <failed> <known>" to it for scripts/test.sh.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEST_NAME=$(basename "$0" .sh)
HSMUX_MODULE="$REPO/target/release/libhsmux.so"
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
ENGINE=${ENGINE:-/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so}
MODULE=${MODULE:-$HSMUX_MODULE}
case "$MODULE" in
  behind) TARGET=behind ;;
  *softhsm*) TARGET=softhsm ;;
  *) TARGET=hsmux ;;
esac
SO_PIN=12345678
PIN=1234
LABEL=${LABEL:-hsmux-soft}

PASSED=0
FAILED=0
KNOWN=0
CLEANUP=()

# Keep the real toolchain and caches when HOME moves (rustup, cargo and the JDK are not
# part of $HOME state that a test may depend on).
HOME_REAL=${HOME:-/root}
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME_REAL/.rustup}
export CARGO_HOME=${CARGO_HOME:-$HOME_REAL/.cargo}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hsmux-$TEST_NAME.XXXXXX")
export HOME="$WORK/home"
export XDG_CONFIG_HOME="$HOME/.config" XDG_DATA_HOME="$HOME/.local/share"
export XDG_CACHE_HOME="$HOME/.cache" XDG_RUNTIME_DIR="$WORK/run"
mkdir -p "$HOME" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
# Nothing from the caller's environment may redirect a consumer.
unset HSMUX_CONFIG SOFTHSM2_CONF OPENSSL_CONF OPENSSL_ENGINES JAVA_TOOL_OPTIONS _JAVA_OPTIONS \
  P11_KIT_DEBUG TEST_PKCS11_MODULE 2>/dev/null || true

ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
not_ok() { # desc [detail]
  FAILED=$((FAILED + 1)); echo "not ok - $1"
  if [ $# -gt 1 ] && [ -n "$2" ]; then printf '%s\n' "$2" | tail -n 40 | sed 's/^/    | /'; fi
}
die() { not_ok "$@"; exit 1; }
known() { KNOWN=$((KNOWN + 1)); echo "known ($TARGET) - $*"; }
note() { echo "# $*"; }
# check DESC CMD...: runs CMD, records ok when it exits 0 (output shown only on failure).
check() {
  local desc=$1 out; shift
  if out=$("$@" 2>&1); then ok "$desc"; else not_ok "$desc (exit $?)" "$out"; fi
}
# Register a cleanup command (run at exit, last registered first).
on_exit() { CLEANUP+=("$*"); }

_finish() {
  local rc=$? i
  set +e
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[$i]}"; done
  rm -rf "$WORK"
  if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
    FAILED=1; echo "not ok - $TEST_NAME stopped early (exit $rc)"
  fi
  echo "$TEST_NAME on $TARGET: $PASSED checks passed, $FAILED failed, $KNOWN known deviations"
  if [ -n "${CONFORMANCE_RESULTS:-}" ]; then
    echo "$TEST_NAME $TARGET $PASSED $FAILED $KNOWN" >> "$CONFORMANCE_RESULTS"
  fi
  [ "$FAILED" -eq 0 ] || exit 1
  exit 0
}
trap _finish EXIT
trap 'echo "# interrupted"; exit 130' INT TERM
trap 'echo "# command failed at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND" >&2' ERR

# hsmux: a config file with one soft slot in the temp dir (named by HSMUX_CONFIG).
# kdf_iterations is lowered from the default 200,000 so that logins stay fast in tests.
setup_hsmux() {
  MODULE=${MODULE:-$HSMUX_MODULE}
  [ -f "$MODULE" ] || die "module $MODULE not found (cargo build --release first)"
  export HSMUX_CONFIG="$WORK/hsmux.toml"
  write_hsmux_config "$HSMUX_CONFIG" "$LABEL" "$WORK/soft"
  export MODULE
}

# write_hsmux_config FILE LABEL STORE_DIR
write_hsmux_config() {
  cat > "$1" <<TOML
[[slot]]
label = "$2"
backend = "soft"
path = "$3"
kdf_iterations = 1000
TOML
}

# SoftHSMv2: a private SOFTHSM2_CONF and token directory in the temp dir.
setup_softhsm() {
  [ -f "$MODULE" ] || die "SoftHSM module $MODULE not found (scripts/deps.sh installs softhsm2)"
  mkdir -p "$WORK/softhsm-tokens"
  cat > "$WORK/softhsm2.conf" <<CONF
directories.tokendir = $WORK/softhsm-tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
  export SOFTHSM2_CONF="$WORK/softhsm2.conf"
  export MODULE
}

setup_behind() {
  [ -f "$HSMUX_MODULE" ] || die "module $HSMUX_MODULE not found (cargo build --release first)"
  local out serial
  MODULE=$SOFTHSM_MODULE setup_softhsm
  out=$(softhsm2-util --init-token --free --label "$LABEL" --so-pin "$SO_PIN" --pin "$PIN" 2>&1) \
    || die "softhsm2-util --init-token" "$out"
  serial=$(softhsm2-util --show-slots | awk -v l="$LABEL" '$1 == "Serial" {ser = $3} $1 == "Label:" && $2 == l {print ser; exit}')
  [ -n "$serial" ] || die "serial of SoftHSM token $LABEL" "$(softhsm2-util --show-slots)"
  mkdir -p "$WORK/softhsm-behind-hsmux"
  ln -sf "$HSMUX_MODULE" "$WORK/softhsm-behind-hsmux/libhsmux.so"
  export HSMUX_CONFIG="$WORK/hsmux.toml"
  cat > "$HSMUX_CONFIG" <<TOML
[[slot]]
label = "$LABEL"
backend = "module"
library = "$SOFTHSM_MODULE"
serial = "$serial"
TOML
  export MODULE="$WORK/softhsm-behind-hsmux/libhsmux.so"
}

# setup: the right one of the three for $MODULE, then the pkcs11-tool command arrays:
#   P0 = pkcs11-tool on the module (first slot), P = the same on the token named $LABEL,
#   PL = P logged in as the user.
setup() {
  command -v pkcs11-tool >/dev/null || die "pkcs11-tool not installed (scripts/deps.sh)"
  case "$TARGET" in
    softhsm) setup_softhsm ;;
    behind) setup_behind ;;
    *) setup_hsmux ;;
  esac
  P0=(pkcs11-tool --module "$MODULE")
  P=(pkcs11-tool --module "$MODULE" --token-label "$LABEL")
  PL=("${P[@]}" --login --pin "$PIN")
  note "module $MODULE ($TARGET), work dir $WORK"
}

# A fresh token: label $LABEL, SO PIN 12345678, user PIN 1234. hsmux's soft slot starts
# uninitialized, like SoftHSM's first slot.
init_token() {
  local out
  out=$("${P0[@]}" --init-token --label "$LABEL" --so-pin "$SO_PIN" 2>&1) || die "init-token" "$out"
  out=$("${P[@]}" --init-pin --login --login-type so --so-pin "$SO_PIN" --pin "$PIN" 2>&1) \
    || die "init-pin" "$out"
}

# Key creation with pkcs11-tool: each takes ID (hex) and LABEL.
_gen() { # what id label pkcs11-tool-args...
  local what=$1 id=$2 label=$3 out; shift 3
  out=$("${PL[@]}" "$@" --id "$id" --label "$label" 2>&1) || die "create $what key $label" "$out"
}
keygen_aes() { _gen AES-256 "$1" "$2" --keygen --key-type AES:32; }
keygen_hmac() { _gen "generic secret (HMAC)" "$1" "$2" --keygen --key-type GENERIC:32; }
keygen_ec() { _gen "EC P-256" "$1" "$2" --keypairgen --key-type EC:prime256v1; }
keygen_rsa() { _gen RSA-2048 "$1" "$2" --keypairgen --key-type rsa:2048; }

# The four key kinds: aes1 (01), ec1 (02), rsa1 (03), hmac1 (04).
make_keys() {
  keygen_aes 01 aes1
  keygen_ec 02 ec1
  keygen_rsa 03 rsa1
  keygen_hmac 04 hmac1
}

# export_pubkey ID OUT.pem: the token's public key as PEM. RSA keys: DER via pkcs11-tool
# --read-object. EC keys: through the libp11 engine, because pkcs11-tool 0.23.0 (Debian 12)
# reads memory it has already freed when it turns CKA_EC_PARAMS/CKA_EC_POINT into an EVP_PKEY
# (valgrind: EVP_PKEY_fromdata reads the curve name from OSSL_PARAMs that pkcs11-tool freed
# just before), so its "cannot create EVP_PKEY" comes and goes with the heap's history, for
# SoftHSM as for hsmux (GLIBC_TUNABLES=glibc.malloc.tcache_count=0 MALLOC_PERTURB_=165 makes
# it fail every time). The same symptom upstream: OpenSC issue #3200 (gone with a newer OpenSC).
export_pubkey() {
  local out id kind
  # pkcs11-tool's listing ignores --id: the kind is that of the block with this ID.
  out=$("${P[@]}" --list-objects --type pubkey 2>&1) || die "list public keys" "$out"
  kind=$(awk -v id="$1" '/^Public Key Object;/ { k = $4 } $1 == "ID:" && $2 == id { print k; exit }' <<<"$out")
  if [ "$kind" = EC ]; then
    id=$(sed 's/../%&/g' <<<"$1")
    out=$( (write_openssl_cnf && openssl pkey -engine pkcs11 -inform engine -pubin \
      -in "pkcs11:token=$LABEL;id=$id;type=public" -pubout -out "$2") 2>&1) \
      || die "read EC public key $1 (libp11 engine)" "$out"
  else
    out=$("${P[@]}" --read-object --type pubkey --id "$1" -o "$WORK/pub-$1.der" 2>&1) \
      || die "read public key $1" "$out"
    openssl_plain pkey -pubin -inform DER -in "$WORK/pub-$1.der" -out "$2"
  fi
}

# An openssl.cnf (from examples/openssl-libp11.cnf) that loads the libp11 engine with
# $MODULE and the user PIN; exported as OPENSSL_CONF.
write_openssl_cnf() {
  [ -f "$ENGINE" ] || die "libp11 engine $ENGINE not installed (scripts/deps.sh)"
  sed -e "s|^dynamic_path *=.*|dynamic_path = $ENGINE|" -e "s|^MODULE_PATH *=.*|MODULE_PATH = $MODULE|" \
    -e "s|^PIN *=.*|PIN = $PIN|" "$REPO/examples/openssl-libp11.cnf" > "$WORK/openssl.cnf"
  grep -q "^MODULE_PATH = $MODULE\$" "$WORK/openssl.cnf" || die "examples/openssl-libp11.cnf has no MODULE_PATH line"
  export OPENSSL_CONF="$WORK/openssl.cnf"
}

# verified DESC CMD...: a plain-OpenSSL verification must print its success line.
verified() {
  local desc=$1 out; shift
  if out=$("$@" 2>&1) && grep -Eq 'Verified OK|Signature Verified Successfully|: OK$' <<<"$out"; then
    ok "$desc"
  else
    not_ok "$desc" "$out"
  fi
}

# Plain OpenSSL, with no engine and no config.
openssl_plain() { OPENSSL_CONF=/dev/null openssl "$@"; }

# make_cert LABEL ID: a self-signed certificate for key LABEL made by OpenSSL through the
# engine (needs write_openssl_cnf) and stored on the token with the key's CKA_ID (Java's
# KeyStore lists only private keys that have a certificate).
make_cert() {
  local label=$1 id=$2 out
  out=$(openssl req -new -x509 -engine pkcs11 -keyform engine \
    -key "pkcs11:token=$LABEL;object=$label;type=private" -subj "/CN=$label" -days 2 \
    -sha256 -out "$WORK/$label.crt" 2>&1) || die "self-signed certificate for $label" "$out"
  openssl_plain x509 -in "$WORK/$label.crt" -outform DER -out "$WORK/$label.crt.der"
  out=$("${PL[@]}" --write-object "$WORK/$label.crt.der" --type cert --id "$id" --label "$label" 2>&1) \
    || die "write certificate $label" "$out"
}

# ---- what the remote-slot consumer tests share (remote_transit.sh, remote_azure.sh); they
# set P/PL (pkcs11-tool on the slot, logged in) and LABEL first.

# signed DESC pkcs11-tool-args...: a pkcs11-tool --sign that must succeed.
signed() {
  local desc=$1 out; shift
  if out=$("${PL[@]}" --sign "$@" 2>&1); then ok "$desc"; return 0; fi
  not_ok "$desc" "$out"; return 1
}

# check_remote_listing WHAT KEY...: pkcs11-tool -L shows the slot's token and -O (logged
# in) lists each KEY; the -O output is left in $LISTING.
check_remote_listing() {
  local what=$1 out k; shift
  out=$(pkcs11-tool --module "$MODULE" -L 2>&1) && grep -q "token label *: $LABEL" <<<"$out" \
    && ok "pkcs11-tool -L shows the $what slot's token" || not_ok "pkcs11-tool -L shows the $what slot's token" "$out"
  LISTING=$("${PL[@]}" -O 2>&1) || true
  for k in "$@"; do
    grep -q "label: *$k\$" <<<"$LISTING" && ok "pkcs11-tool -O lists $what key $k" \
      || not_ok "pkcs11-tool -O lists $what key $k" "$LISTING"
  done
}

# check_remote_signatures WHAT EC_ID RSA_ID PSS_BITS: the public keys exported (to
# $WORK/ec.pem, $WORK/rsa.pem), pkcs11-tool signs $WORK/msg (3000 random bytes) with
# ECDSA-SHA256, SHA256-RSA-PKCS and SHA<PSS_BITS>-RSA-PKCS-PSS (salt = hash length), and
# plain OpenSSL verifies each signature.
check_remote_signatures() {
  local what=$1 ec=$2 rsa=$3 bits=$4
  local salt=$((bits / 8))
  export_pubkey "$ec" "$WORK/ec.pem"
  export_pubkey "$rsa" "$WORK/rsa.pem"
  head -c 3000 /dev/urandom > "$WORK/msg"
  signed "pkcs11-tool signs ECDSA-SHA256 with the $what EC key" -m ECDSA-SHA256 --id "$ec" \
    --signature-format openssl -i "$WORK/msg" -o "$WORK/ec.sig" \
    && verified "the $what ECDSA signature verifies with plain OpenSSL" \
      openssl_plain dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/ec.sig" "$WORK/msg"
  signed "pkcs11-tool signs SHA256-RSA-PKCS with the $what RSA key" -m SHA256-RSA-PKCS --id "$rsa" \
    -i "$WORK/msg" -o "$WORK/rsa.sig" \
    && verified "the $what RSA PKCS#1 signature verifies with plain OpenSSL" \
      openssl_plain dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/rsa.sig" "$WORK/msg"
  signed "pkcs11-tool signs SHA$bits-RSA-PKCS-PSS (salt $salt) with the $what RSA key" \
    -m "SHA$bits-RSA-PKCS-PSS" --mgf "MGF1-SHA$bits" --salt-len "$salt" --id "$rsa" \
    -i "$WORK/msg" -o "$WORK/pss.sig" \
    && verified "the $what RSA-PSS signature verifies with plain OpenSSL (salt $salt)" \
      openssl_plain dgst "-sha$bits" -sigopt rsa_padding_mode:pss -sigopt "rsa_pss_saltlen:$salt" \
      -verify "$WORK/rsa.pem" -signature "$WORK/pss.sig" "$WORK/msg"
}

# check_oaep_decrypt DESC RSA_ID PEM: plain OpenSSL encrypts 48 random bytes with
# OAEP-SHA256 to PEM; pkcs11-tool decrypts them with key RSA_ID.
check_oaep_decrypt() {
  local desc=$1 id=$2 pem=$3 out
  head -c 48 /dev/urandom > "$WORK/secret"
  openssl_plain pkeyutl -encrypt -pubin -inkey "$pem" -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in "$WORK/secret" -out "$WORK/secret.enc"
  if out=$("${PL[@]}" --decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 \
    --id "$id" -i "$WORK/secret.enc" -o "$WORK/secret.dec" 2>&1) && cmp -s "$WORK/secret" "$WORK/secret.dec"; then
    ok "$desc"
  else
    not_ok "$desc" "$out"
  fi
}

# check_engine_sign DESC URI PEM: OpenSSL with the libp11 engine (write_openssl_cnf first)
# signs $WORK/hash with the key at URI; plain OpenSSL verifies it with PEM.
check_engine_sign() {
  local desc=$1 uri=$2 pem=$3 out
  if out=$(openssl pkeyutl -engine pkcs11 -keyform engine -inkey "$uri" -sign -in "$WORK/hash" \
    -out "$WORK/e.sig" 2>&1); then
    ok "$desc"
    verified "that signature verifies with plain OpenSSL" \
      openssl_plain pkeyutl -verify -pubin -inkey "$pem" -in "$WORK/hash" -sigfile "$WORK/e.sig"
  else
    not_ok "$desc" "$out"
  fi
}

# check_server_gone PID ID: the service stopped, an ECDSA signature with key ID fails
# (a device error within the deadline, no hang).
check_server_gone() {
  local pid=$1 id=$2 out rc start took
  kill "$pid"; wait "$pid" 2>/dev/null || true
  start=$(date +%s)
  out=$("${PL[@]}" --sign -m ECDSA-SHA256 --id "$id" -i "$WORK/msg" -o "$WORK/x.sig" 2>&1) && rc=0 || rc=$?
  took=$(( $(date +%s) - start ))
  if [ "$rc" -ne 0 ] && [ "$took" -lt 60 ]; then
    ok "with the server stopped, signing fails (no hang: ${took}s)"
  else
    not_ok "with the server stopped, signing fails (rc $rc, ${took}s)" "$out"
  fi
}
