#!/usr/bin/env bash
# The Debian package as users get it: scripts/package.sh builds it, dpkg installs it, and
# the consumers run against the installed paths only; the package is purged at exit (trap),
# so it is installed for the few seconds the consumers take:
#   - the files: the stripped .so in the multiarch pkcs11 dir, /usr/bin/hsmux, the p11-kit
#     module file, the conffile, man pages; `hsmux init` initialises the token;
#   - OpenSSL 3 + pkcs11-provider: a CA by `openssl req -x509` on an EC key in hsmux by
#     pkcs11: URI, a leaf (its key in hsmux too) signed by it, `openssl verify` by plain
#     OpenSSL; `openssl s_server` holding the leaf key in hsmux, plain `s_client` verifying;
#   - GnuTLS: `p11tool --list-all` through p11-kit's registry (no module path), `certtool`
#     self-signing with a hsmux key, the certificate verified by plain OpenSSL;
#   - p11-kit remoting: `p11-kit server` serves the token (found through the registry) on a
#     Unix socket, pkcs11-tool signs through p11-kit-client.so, plain OpenSSL verifies.
# Needs root (dpkg); the token lives in this test's own config ($HSMUX_CONFIG).
# Usage: conformance/package.sh [DEB]   (default: build one with scripts/package.sh)
source "$(dirname "$0")/lib.sh"
[ "$TARGET" = hsmux ] || { note "the package test is for hsmux only"; exit 0; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
LIBDIR=/usr/lib/x86_64-linux-gnu
SO=$LIBDIR/pkcs11/libhsmux.so
PROVIDER=$LIBDIR/ossl-modules/pkcs11.so
CLIENT=$LIBDIR/pkcs11/p11-kit-client.so
for f in "$PROVIDER" "$CLIENT"; do [ -e "$f" ] || die "$f missing (scripts/deps.sh)"; done
for c in p11tool certtool p11-kit pkcs11-tool; do command -v $c >/dev/null || die "$c missing (scripts/deps.sh)"; done

# Everything slow happens before the install: the package, the config, the PIN files.
deb=${1:-}
if [ -z "$deb" ]; then
  out=$("$REPO/scripts/package.sh" --no-build 2>&1) || die "scripts/package.sh" "$out"
  deb=$REPO/$(tail -n 1 <<<"$out")
fi
[ -f "$deb" ] && ok "package built: $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)" || die "no .deb" "$deb"
export HSMUX_CONFIG="$WORK/hsmux.toml"
write_hsmux_config "$HSMUX_CONFIG" "$LABEL" "$WORK/soft"
export HSMUX_TEST_SO_PIN=$SO_PIN HSMUX_TEST_PIN=$PIN
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
mport=$(free_port)
# s_server's own config: the same token plus the /metrics listener, scraped while it serves
# (the other consumers' processes have no listener, so none fights for the port).
{ cat "$HSMUX_CONFIG"; printf '\n[metrics]\nlisten = "127.0.0.1:%s"\n' "$mport"; } > "$WORK/server.toml"
# promtool from Debian's prometheus package, unpacked (not installed: no service starts).
promtool=$("$REPO/scripts/promtool.sh" 2>&1) \
  || { note "promtool not obtainable ($promtool): the metrics check is skipped"; promtool=""; }

if dpkg -s hsmux >/dev/null 2>&1; then die "a hsmux package is installed already: not touching it"; fi
out=$($SUDO dpkg -i "$deb" 2>&1) || { $SUDO dpkg --purge hsmux >/dev/null 2>&1; die "dpkg -i" "$out"; }
on_exit "$SUDO dpkg --purge hsmux >/dev/null 2>&1 && echo '# package purged' || echo 'not ok - dpkg --purge hsmux failed'"
ok "dpkg -i $(basename "$deb")"

# --- the installed files
for f in "$SO" /usr/bin/hsmux /usr/share/p11-kit/modules/hsmux.module /etc/hsmux/hsmux.toml \
  /usr/share/man/man1/hsmux.1.gz /usr/share/man/man5/hsmux.toml.5.gz /usr/share/doc/hsmux/copyright; do
  [ -e "$f" ] && ok "installed $f" || not_ok "installed $f"
done
if readelf -S "$SO" | grep -q '\.debug_info'; then not_ok "$SO is stripped"; else ok "$SO is stripped ($(stat -c %s "$SO") bytes)"; fi
grep -qx /etc/hsmux/hsmux.toml /var/lib/dpkg/info/hsmux.conffiles && ok "/etc/hsmux/hsmux.toml is a conffile" \
  || not_ok "/etc/hsmux/hsmux.toml is a conffile"
out=$(man -P cat hsmux 2>&1) && grep -q 'init' <<<"$out" && ok "man hsmux" || not_ok "man hsmux" "$out"
[ "$(hsmux --version)" = "hsmux $(dpkg-query -W -f '${Version}' hsmux | sed 's/-[^-]*$//')" ] \
  && ok "hsmux --version is the package version" || not_ok "hsmux --version" "$(hsmux --version)"
check "hsmux init (PINs from env:)" hsmux init --so-pin-source env:HSMUX_TEST_SO_PIN --pin-source env:HSMUX_TEST_PIN
out=$(hsmux status 2>&1) && grep -q "token \"$LABEL\".*user PIN ok" <<<"$out" && ok "hsmux status: token ready" \
  || not_ok "hsmux status" "$out"
MODULE=$SO
P=(pkcs11-tool --module "$SO" --token-label "$LABEL")
PL=("${P[@]}" --login --pin "$PIN")
keygen_ec 01 ca
keygen_ec 02 leaf
keygen_ec 03 gnutls

# --- OpenSSL 3 with pkcs11-provider (the key by pkcs11: URI, the module by installed path)
cat > "$WORK/provider.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
pkcs11 = pkcs11_sect
[default_sect]
activate = 1
[pkcs11_sect]
module = $PROVIDER
pkcs11-module-path = $SO
pkcs11-module-token-pin = $PIN
activate = 1
CNF
ossl() { OPENSSL_CONF="$WORK/provider.cnf" openssl "$@"; }
uri() { echo "pkcs11:token=$LABEL;object=$1;type=private"; }
check "openssl req -x509: CA on a hsmux EC key" ossl req -x509 -new -key "$(uri ca)" -sha256 -days 2 \
  -subj "/CN=hsmux test CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
  -out "$WORK/ca.crt"
check "openssl req: the leaf's request (key in hsmux)" ossl req -new -key "$(uri leaf)" -sha256 \
  -subj "/CN=localhost" -out "$WORK/leaf.csr"
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$WORK/leaf.ext"
check "openssl x509 -req: the leaf signed by the CA key in hsmux" ossl x509 -req -in "$WORK/leaf.csr" \
  -CA "$WORK/ca.crt" -CAkey "$(uri ca)" -CAcreateserial -days 2 -sha256 -extfile "$WORK/leaf.ext" \
  -out "$WORK/leaf.crt"
verified "openssl verify (plain OpenSSL): leaf against the CA" openssl_plain verify -CAfile "$WORK/ca.crt" "$WORK/leaf.crt"

HSMUX_CONFIG="$WORK/server.toml" ossl s_server -accept "127.0.0.1:$port" -cert "$WORK/leaf.crt" -key "$(uri leaf)" -www -naccept 20 \
  > "$WORK/s_server.log" 2>&1 &
server=$!
on_exit "kill $server 2>/dev/null; wait $server 2>/dev/null"
tls=""
for _ in $(seq 1 50); do
  tls=$(printf 'GET / HTTP/1.0\r\n\r\n' | openssl_plain s_client -connect "127.0.0.1:$port" \
    -CAfile "$WORK/ca.crt" -verify_return_error -verify_hostname localhost -ign_eof 2>&1) && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.2
done
if grep -q 'Verify return code: 0 (ok)' <<<"$tls" && grep -q '^HTTP/1.0 200 ok' <<<"$tls"; then
  ok "TLS: s_server's key in hsmux, plain s_client verifies ($(grep -m1 -o 'Peer signature type: .*' <<<"$tls"))"
else
  not_ok "TLS handshake with the key in hsmux" "$tls$(cat "$WORK/s_server.log")"
fi
# /metrics of the module inside s_server (hyper), checked by promtool
metrics=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode(), end="")' \
  "http://127.0.0.1:$mport/metrics" 2>&1) || true
grep -Eq '^hsmux_calls_total\{.*function="C_Sign(Final)?".*\} [1-9]' <<<"$metrics" \
  && ok "/metrics of the served module counts the handshake's signature (C_Sign/C_SignFinal)" || not_ok "/metrics counts C_Sign" "$metrics"
if [ -n "$promtool" ]; then
  out=$("$promtool" check metrics <<<"$metrics" 2>&1) && ok "promtool check metrics accepts /metrics" \
    || not_ok "promtool check metrics" "$out"
fi
# Prometheus itself (the same Debian package, unpacked) scraping that module: it asks for
# OpenMetrics first, which hsmux answers with prometheus-client's encoder.
prometheus=$REPO/target/tools/usr/bin/prometheus
om=$(python3 - "http://127.0.0.1:$mport/metrics" <<'PY' 2>&1
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"})
with urllib.request.urlopen(req, timeout=10) as r:
    print(r.headers["Content-Type"]); print(r.read().decode(), end="")
PY
) || true
if grep -q '^application/openmetrics-text; version=1.0.0' <<<"$om" && grep -q '^# EOF$' <<<"$om" \
    && grep -q '^# TYPE hsmux_calls counter$' <<<"$om"; then
  ok "/metrics answers OpenMetrics 1.0 to a scraper that asks for it"
else
  not_ok "/metrics in OpenMetrics" "$om"
fi
if [ -x "$prometheus" ]; then
  pport=$(free_port)
  printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: hsmux\n    static_configs:\n      - targets: ["127.0.0.1:%s"]\n' \
    "$mport" > "$WORK/prometheus.yml"
  "$prometheus" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$pport" > "$WORK/prometheus.log" 2>&1 &
  prom=$!
  on_exit "kill $prom 2>/dev/null; wait $prom 2>/dev/null"
  ans=""
  for _ in $(seq 1 60); do
    ans=$(python3 - "http://127.0.0.1:$pport/api/v1/query" <<'PY' 2>&1
import json, sys, urllib.parse, urllib.request
q = urllib.parse.urlencode({"query": 'sum(hsmux_calls_total{function=~"C_Sign(Final)?"}) and on() up{job="hsmux"} == 1'})
with urllib.request.urlopen(sys.argv[1] + "?" + q, timeout=5) as r:
    res = json.load(r)["data"]["result"]
print(res[0]["value"][1] if res else "none")
PY
) || true
    [[ "$ans" =~ ^[1-9][0-9]*$ ]] && break
    sleep 0.5
  done
  if [[ "$ans" =~ ^[1-9][0-9]*$ ]]; then
    ok "Prometheus 2.42 scrapes the module's /metrics (target up, $ans signatures counted)"
  else
    not_ok "Prometheus scraping /metrics" "$ans $(tail -5 "$WORK/prometheus.log")"
  fi
  kill "$prom" 2>/dev/null; wait "$prom" 2>/dev/null || true
fi
kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true

# --- GnuTLS through p11-kit's registry (no module path anywhere)
out=$(GNUTLS_PIN=$PIN p11tool --list-all --login "pkcs11:token=$LABEL" 2>&1) || true
if grep -q "manufacturer=hsmux" <<<"$out" && grep -q "object=ca;" <<<"$out"; then
  ok "p11tool --list-all finds the hsmux token and its keys through the registry"
else
  not_ok "p11tool --list-all through the registry" "$out"
fi
cat > "$WORK/gnutls.tmpl" <<TMPL
cn = "gnutls signed by hsmux"
expiration_days = 2
ca
cert_signing_key
TMPL
check "certtool --generate-self-signed with a hsmux key" env GNUTLS_PIN="$PIN" certtool \
  --generate-self-signed --load-privkey "$(uri gnutls)" --template "$WORK/gnutls.tmpl" \
  --outfile "$WORK/gnutls.crt"
verified "openssl verify (plain OpenSSL): certtool's certificate" openssl_plain verify \
  -CAfile "$WORK/gnutls.crt" "$WORK/gnutls.crt"

# --- p11-kit remoting: the token served on a Unix socket, used through p11-kit-client.so
sock="$WORK/run/p11kit.sock"
p11-kit server -f -n "$sock" "pkcs11:token=$LABEL" > "$WORK/p11kit-server.log" 2>&1 &
pserver=$!
on_exit "kill $pserver 2>/dev/null; wait $pserver 2>/dev/null"
for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
export P11_KIT_SERVER_ADDRESS="unix:path=$sock"
# CKM_ECDSA on a SHA-256 digest: p11-kit's RPC forwards only the mechanisms it knows how
# to serialize, and CKM_ECDSA_SHA256 is not among them in bookworm's p11-kit.
head -c 1000 /dev/urandom > "$WORK/data"
openssl_plain dgst -sha256 -binary -out "$WORK/data.sha256" "$WORK/data"
out=$(pkcs11-tool --module "$CLIENT" --token-label "$LABEL" --login --pin "$PIN" --sign -m ECDSA \
  --id 02 --signature-format openssl -i "$WORK/data.sha256" -o "$WORK/remote.sig" 2>&1) \
  && ok "pkcs11-tool signs through p11-kit-client.so and p11-kit server" \
  || not_ok "sign through p11-kit-client.so" "$out$(cat "$WORK/p11kit-server.log")"
unset P11_KIT_SERVER_ADDRESS
openssl_plain x509 -in "$WORK/leaf.crt" -pubkey -noout > "$WORK/leaf.pub"
verified "the remote signature verifies (plain OpenSSL, the leaf certificate's key)" openssl_plain pkeyutl \
  -verify -pubin -inkey "$WORK/leaf.pub" -sigfile "$WORK/remote.sig" -in "$WORK/data.sha256"

