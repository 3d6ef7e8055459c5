#!/usr/bin/env bash
# python-pkcs11 (PyPI) as a PKCS#11 3.2 consumer of ML-DSA and ML-KEM on the soft token: it
# takes the 3.2 function list with C_GetInterface("PKCS 11", {3, 2}) and encapsulates and
# decapsulates through it; what it gets is checked by pyca/cryptography's ML-DSA/ML-KEM
# (conformance/pqc/python_pkcs11_pqc.py has the checks).
# Usage: [MODULE=/path/to/libhsmux.so] conformance/python_pkcs11_pqc.sh
source "$(dirname "$0")/lib.sh"
setup
[ "$TARGET" = hsmux ] || { note "ML-DSA/ML-KEM are checked on hsmux only"; exit 0; }
PY=$REPO/.venv/bin/python
[ -x "$PY" ] || die "python not found at $PY (scripts/deps.sh makes .venv)"
"$PY" -c 'import pkcs11, cryptography.hazmat.primitives.asymmetric.mlkem' 2>/dev/null \
  || die "python-pkcs11 or pyca/cryptography with ML-KEM missing in .venv (scripts/deps.sh)"
init_token

set +e
out=$("$PY" "$REPO/conformance/pqc/python_pkcs11_pqc.py" "$MODULE" "$LABEL" "$PIN" 2>&1)
rc=$?
set -e
while IFS= read -r line; do
  case "$line" in
    "ok - "*) ok "${line#ok - }" ;;
    "not ok - "*) not_ok "${line#not ok - }" ;;
  esac
done <<< "$out"
[ "$rc" -eq 0 ] || [ "$FAILED" -gt 0 ] || not_ok "python_pkcs11_pqc.py exited $rc" "$out"
