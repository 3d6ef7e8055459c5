"""ML-DSA and ML-KEM through PKCS#11 3.2, driven by python-pkcs11 (a consumer that is not
hsmux's code: it fetches the 3.2 function list with C_GetInterface("PKCS 11", {3, 2}) and
calls C_EncapsulateKey / C_DecapsulateKey from it), checked by pyca/cryptography's ML-DSA
and ML-KEM (OpenSSL's implementation, independent of hsmux's aws-lc).

Usage: python python_pkcs11_pqc.py MODULE TOKEN_LABEL USER_PIN
Prints one "ok - ..." or "not ok - ..." line per check; exits 1 when a check failed.
"""

import ctypes
import struct
import sys

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import MLDSAParameterSet, MLKEMParameterSet

# PKCS#11 3.2: CK_HEDGE_TYPE values (CK_SIGN_ADDITIONAL_CONTEXT.hedgeVariant).
CKH_HEDGE_PREFERRED = 0
CKH_HEDGE_REQUIRED = 1

FAILED = 0


def result(ok, desc, detail=""):
    global FAILED
    if ok:
        print(f"ok - {desc}")
    else:
        FAILED += 1
        print(f"not ok - {desc}" + (f": {detail}" if detail else ""))


def sign_context(hedge, context):
    """A CK_SIGN_ADDITIONAL_CONTEXT as python-pkcs11's raw parameter bytes (its documented
    escape hatch for mechanisms it has no parameter class for). The context buffer is
    returned too: it must outlive the call that reads the structure."""
    buf = ctypes.create_string_buffer(context, len(context))
    raw = struct.pack("=QQQ", hedge, ctypes.addressof(buf), len(context))
    return raw, buf


def verifies(public, sig, msg, context=None):
    try:
        public.verify(sig, msg, context) if context is not None else public.verify(sig, msg)
        return True
    except InvalidSignature:
        return False


DSA = {
    MLDSAParameterSet.ML_DSA_44: mldsa.MLDSA44PublicKey,
    MLDSAParameterSet.ML_DSA_65: mldsa.MLDSA65PublicKey,
    MLDSAParameterSet.ML_DSA_87: mldsa.MLDSA87PublicKey,
}


def ml_dsa(session):
    msg = b"post-quantum message signed through python-pkcs11"
    for ps, public_type in DSA.items():
        pub, priv = session.generate_keypair(
            KeyType.ML_DSA,
            store=False,
            public_template={Attribute.PARAMETER_SET: ps},
        )
        value = pub[Attribute.VALUE]
        theirs = public_type.from_public_bytes(value)
        sig = priv.sign(msg, mechanism=Mechanism.ML_DSA)
        result(verifies(theirs, sig, msg), f"{ps.name}: hsmux's signature verified by pyca/cryptography")
        result(pub.verify(msg, sig, mechanism=Mechanism.ML_DSA), f"{ps.name}: and by hsmux (C_Verify)")

    # ML-DSA-65 with a context string (CK_SIGN_ADDITIONAL_CONTEXT) both ways.
    pub, priv = session.generate_keypair(
        KeyType.ML_DSA, store=False,
        public_template={Attribute.PARAMETER_SET: MLDSAParameterSet.ML_DSA_65},
    )
    theirs = mldsa.MLDSA65PublicKey.from_public_bytes(pub[Attribute.VALUE])
    ctx = b"hsmux conformance context"
    param, keep = sign_context(CKH_HEDGE_REQUIRED, ctx)
    sig = priv.sign(msg, mechanism=Mechanism.ML_DSA, mechanism_param=param)
    result(verifies(theirs, sig, msg, ctx), "ML-DSA-65 with a context: verified by pyca/cryptography with that context")
    result(not verifies(theirs, sig, msg, b"another context"), "ML-DSA-65 with a context: refused under another context")
    result(not verifies(theirs, sig, msg), "ML-DSA-65 with a context: refused with the empty context")
    param, keep = sign_context(CKH_HEDGE_PREFERRED, ctx)
    result(pub.verify(msg, sig, mechanism=Mechanism.ML_DSA, mechanism_param=param),
           "ML-DSA-65 with a context: hsmux verifies its own signature with the context")

    # A key made outside from a seed, imported by CKA_SEED: hsmux's signature verifies
    # under the public key pyca derived from the same seed.
    key = mldsa.MLDSA65PrivateKey.generate()
    seed = key.private_bytes_raw()
    imported = session.create_object({
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.KEY_TYPE: KeyType.ML_DSA,
        Attribute.PARAMETER_SET: MLDSAParameterSet.ML_DSA_65,
        Attribute.SEED: seed,
        Attribute.SIGN: True,
        Attribute.TOKEN: False,
    })
    sig = imported.sign(msg, mechanism=Mechanism.ML_DSA, mechanism_param=param)
    result(verifies(key.public_key(), sig, msg, ctx), "ML-DSA-65 key imported by CKA_SEED signs as pyca's key of that seed")

    # pyca's signature verified by hsmux, and a tampered one refused.
    outside = key.sign(msg, ctx)
    their_pub = session.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: KeyType.ML_DSA,
        Attribute.PARAMETER_SET: MLDSAParameterSet.ML_DSA_65,
        Attribute.VALUE: key.public_key().public_bytes_raw(),
        Attribute.VERIFY: True,
        Attribute.TOKEN: False,
    })
    result(their_pub.verify(msg, outside, mechanism=Mechanism.ML_DSA, mechanism_param=param),
           "ML-DSA-65: pyca's signature with a context verified by hsmux")
    bad = bytearray(outside)
    bad[10] ^= 1
    result(not their_pub.verify(msg, bytes(bad), mechanism=Mechanism.ML_DSA, mechanism_param=param),
           "ML-DSA-65: a tampered signature refused by hsmux")
    del keep


KEM = {
    MLKEMParameterSet.ML_KEM_768: (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey),
    MLKEMParameterSet.ML_KEM_1024: (mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey),
}

# The shared secret as a key the test may read back.
READABLE = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}


def ml_kem(session):
    for ps, (private_type, public_type) in KEM.items():
        # hsmux's key pair: pyca encapsulates to its public key, hsmux decapsulates.
        pub, priv = session.generate_keypair(
            KeyType.ML_KEM, store=False,
            public_template={Attribute.PARAMETER_SET: ps},
        )
        theirs = public_type.from_public_bytes(pub[Attribute.VALUE])
        ss, ct = theirs.encapsulate()  # pyca returns (shared secret, ciphertext)
        key = priv.decapsulate_key(ct, KeyType.GENERIC_SECRET, key_length=256, template=READABLE)
        result(key[Attribute.VALUE] == ss, f"{ps.name}: hsmux decapsulates pyca's ciphertext to pyca's secret")
        aes = priv.decapsulate_key(ct, KeyType.AES, key_length=128, template=READABLE)
        result(aes[Attribute.VALUE] == ss[:16], f"{ps.name}: an AES-128 key from the secret takes its first 16 bytes")

        # hsmux encapsulates (C_EncapsulateKey of the 3.2 list) to pyca's key.
        outside = private_type.generate()
        their_pub = session.create_object({
            Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.KEY_TYPE: KeyType.ML_KEM,
            Attribute.PARAMETER_SET: ps,
            Attribute.VALUE: outside.public_key().public_bytes_raw(),
            Attribute.ENCAPSULATE: True,
            Attribute.TOKEN: False,
        })
        ct, key = their_pub.encapsulate_key(KeyType.GENERIC_SECRET, key_length=256, template=READABLE)
        result(outside.decapsulate(ct) == key[Attribute.VALUE],
               f"{ps.name}: pyca decapsulates hsmux's ciphertext to hsmux's secret")

        # pyca's private key imported by its seed (d||z): hsmux opens what pyca's public key
        # encapsulated.
        imported = session.create_object({
            Attribute.CLASS: ObjectClass.PRIVATE_KEY,
            Attribute.KEY_TYPE: KeyType.ML_KEM,
            Attribute.PARAMETER_SET: ps,
            Attribute.SEED: outside.private_bytes_raw(),
            Attribute.DECAPSULATE: True,
            Attribute.TOKEN: False,
        })
        ss, ct = outside.public_key().encapsulate()
        key = imported.decapsulate_key(ct, KeyType.GENERIC_SECRET, key_length=256, template=READABLE)
        result(key[Attribute.VALUE] == ss, f"{ps.name}: a key imported by CKA_SEED decapsulates as pyca's key")

        # A ciphertext of the wrong length: CKR_ENCRYPTED_DATA_LEN_RANGE.
        try:
            imported.decapsulate_key(ct[:-1], KeyType.GENERIC_SECRET, key_length=256)
            result(False, f"{ps.name}: a short ciphertext refused", "accepted")
        except pkcs11.exceptions.EncryptedDataLenRange:
            result(True, f"{ps.name}: a short ciphertext refused (CKR_ENCRYPTED_DATA_LEN_RANGE)")


def main():
    module, label, pin = sys.argv[1:4]
    lib = pkcs11.lib(module)
    token = lib.get_token(token_label=label)
    with token.open(rw=True, user_pin=pin) as session:
        ml_dsa(session)
        ml_kem(session)
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
