"""C_WrapKey / C_UnwrapKey on an azure-kv slot through python-pkcs11 (pkcs11-tool cannot:
its --unwrap makes token objects, which a remote slot does not hold, and its --encrypt has
no AES-KEY-WRAP), each result checked by the `cryptography` package:

- AES-KW: a session AES key wrapped by the oct-HSM key `aes1` unwraps with the HSM's key
  bytes (from azurekv_server.py's control port), and a key wrapped with those bytes unwraps
  through the HSM to the same value (the transit-KEK pattern);
- RSA-OAEP-256: a key wrapped with `rsa1`'s public key by `cryptography` unwraps through
  the HSM, and hsmux's own wrap with the public key unwraps through the HSM again.

Usage: azurekv_wrap.py MODULE TOKEN_LABEL PIN CONTROL_PORT
Prints `ok - ...` / `not ok - ...` lines (conformance/remote_azure.sh counts them).
"""

import base64
import json
import os
import sys
import urllib.request

import pkcs11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass

module, label, pin, control = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
failed = 0


def result(desc, good, detail=""):
    global failed
    print(f"{'ok' if good else 'not ok'} - {desc}" + ("" if good else f"  ({detail})"), flush=True)
    failed += 0 if good else 1


def material(key_id):
    """The oct-HSM key bytes of CKA_ID `name/version`, from the server's control port."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{control}/__control/material",
        data=json.dumps({"kid": f"x/keys/{key_id}"}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return base64.b64decode(json.load(r)["key"])


READABLE = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}


def session_aes(session, value):
    return session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
        Attribute.VALUE: value, Attribute.TOKEN: False, **READABLE,
    })


def unwrap(key, wrapped, **mech):
    k = key.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, template=READABLE,
                       capabilities=pkcs11.MechanismFlag.ENCRYPT, **mech)
    return k[Attribute.VALUE]


token = pkcs11.lib(module).get_token(token_label=label)
with token.open(user_pin=pin) as s:
    kek = s.get_key(ObjectClass.SECRET_KEY, label="aes1")
    kek_bytes = material(kek[Attribute.ID].decode())
    secret = os.urandom(32)
    try:
        wrapped = kek.wrap_key(session_aes(s, secret), mechanism=Mechanism.AES_KEY_WRAP)
        result("C_WrapKey AES-KW by the oct-HSM key unwraps with its key bytes (cryptography)",
               aes_key_unwrap(kek_bytes, wrapped) == secret)
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        result("C_WrapKey AES-KW by the oct-HSM key", False, repr(e))
    try:
        other = os.urandom(32)
        got = unwrap(kek, aes_key_wrap(kek_bytes, other), mechanism=Mechanism.AES_KEY_WRAP)
        result("C_UnwrapKey AES-KW through the HSM gives the key cryptography wrapped", got == other)
    except Exception as e:  # noqa: BLE001
        result("C_UnwrapKey AES-KW through the HSM", False, repr(e))

    pub = s.get_key(ObjectClass.PUBLIC_KEY, label="rsa1")
    priv = s.get_key(ObjectClass.PRIVATE_KEY, label="rsa1")
    oaep256 = dict(mechanism=Mechanism.RSA_PKCS_OAEP,
                   mechanism_param=(Mechanism.SHA256, MGF.SHA256, None))
    try:
        spki = rsa.RSAPublicNumbers(int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
                                    int.from_bytes(pub[Attribute.MODULUS], "big")).public_key()
        key3 = os.urandom(32)
        ct = spki.encrypt(key3, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
        result("C_UnwrapKey RSA-OAEP-256 through the HSM gives the key cryptography wrapped",
               unwrap(priv, ct, **oaep256) == key3)
        key4 = os.urandom(32)
        wrapped = pub.wrap_key(session_aes(s, key4), **oaep256)
        result("C_WrapKey RSA-OAEP-256 with the public key unwraps through the HSM",
               unwrap(priv, wrapped, **oaep256) == key4)
    except Exception as e:  # noqa: BLE001
        result("RSA-OAEP-256 wrap/unwrap", False, repr(e))
sys.exit(1 if failed else 0)
