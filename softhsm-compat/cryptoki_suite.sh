#!/usr/bin/env bash
# The cryptoki crate's published integration tests (conformance/cryptoki_suite.sh) run on
# SoftHSMv2 directly and on SoftHSMv2 behind hsmux; every test must end the same way in
# both runs, except the four that conformance/cryptoki_suite.behind.skip leaves out with
# their reasons (all four stem from hsmux being a 3.0 library in front of a 2.40 one).
MODULE=behind
source "$(dirname "$0")/../conformance/lib.sh"
suite="$REPO/conformance/cryptoki_suite.sh"
out=$(MODULE="$SOFTHSM_MODULE" SUITE_LIST="$WORK/direct.list" bash "$suite" 2>&1) \
  && ok "cryptoki suite on SoftHSM directly" || not_ok "cryptoki suite on SoftHSM directly" "$out"
out=$(MODULE=behind SUITE_LIST="$WORK/behind.list" bash "$suite" 2>&1) \
  && ok "cryptoki suite on SoftHSM behind hsmux" || not_ok "cryptoki suite on SoftHSM behind hsmux" "$out"
[ -s "$WORK/direct.list" ] && [ -s "$WORK/behind.list" ] || die "a run listed no tests"
skipped=$(sed -nE 's/^([a-z_0-9:]+) .*/\1/p' "$REPO/conformance/cryptoki_suite.behind.skip")
grep -vxFf <(sed 's/$/ ok/' <<<"$skipped") "$WORK/direct.list" > "$WORK/direct.cmp"
n=$(grep -c ' ok$' "$WORK/direct.cmp" || true)
if d=$(diff -u "$WORK/direct.cmp" "$WORK/behind.list"); then
  ok "all $n tests end alike directly and behind hsmux ($(grep -c . <<<"$skipped") left out, see conformance/cryptoki_suite.behind.skip)"
else
  not_ok "the suite ends differently behind hsmux" "$d"
fi
