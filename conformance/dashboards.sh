#!/usr/bin/env bash
# The shipped alerting rules (examples/prometheus/hsmux-rules.yml): `promtool check rules`
# accepts them, `promtool test rules` runs their unit tests (hsmux-rules.test.yml), and the
# tests bite: each rule weakened in a copy fails them. (The Grafana dashboard's queries
# are checked against a real /metrics scrape by tests/replica_failover.rs.)
source "$(dirname "$0")/lib.sh"
[ "$TARGET" = hsmux ] || { note "the dashboards are hsmux's only"; exit 0; }
promtool=$("$REPO/scripts/promtool.sh" 2>&1) || die "promtool (Debian's prometheus package)" "$promtool"
rules=$REPO/examples/prometheus
check "promtool check rules hsmux-rules.yml" "$promtool" check rules "$rules/hsmux-rules.yml"
check "promtool test rules hsmux-rules.test.yml" "$promtool" test rules "$rules/hsmux-rules.test.yml"
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$REPO/examples/grafana/hsmux.json" \
  && ok "examples/grafana/hsmux.json is JSON" || not_ok "examples/grafana/hsmux.json is JSON"

# Mutants: a copy of the rules with one change each must fail the unit tests.
mutate() { # desc sed-expression
  mkdir -p "$WORK/m"
  sed -e "$2" "$rules/hsmux-rules.yml" > "$WORK/m/hsmux-rules.yml"
  cp "$rules/hsmux-rules.test.yml" "$WORK/m/"
  if cmp -s "$rules/hsmux-rules.yml" "$WORK/m/hsmux-rules.yml"; then not_ok "mutant '$1' changes nothing"; return; fi
  if "$promtool" test rules "$WORK/m/hsmux-rules.test.yml" >/dev/null 2>&1; then
    not_ok "the rule tests catch: $1"
  else
    ok "the rule tests catch: $1"
  fi
}
mutate "replica down alerts at once" 's/^        for: 1m$/        for: 0s/'
mutate "all-down counts any replica up" 's/max by (job, instance, slot)/min by (job, instance, slot)/'
mutate "error ratio threshold 15 %" 's/> 0.05$/> 0.15/'
mutate "size probes counted as errors" 's/rv!~"CKR_OK|CKR_BUFFER_TOO_SMALL"/rv!="CKR_OK"/'
mutate "p99 threshold 300 ms" 's/> 0.1$/> 0.3/'
mutate "audit drops ignored" 's/increase(hsmux_audit_dropped_total\[5m\]) > 0/increase(hsmux_audit_dropped_total[5m]) > 5/'
mutate "audit write errors ignored" 's/increase(hsmux_audit_write_errors_total\[5m\]) > 0/increase(hsmux_audit_write_errors_total[5m]) > 5/'
