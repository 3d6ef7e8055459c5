"""The post-quantum part of the Cloud KMS stand-in (gcpkms_server.py), after the REST v1
reference:

- algorithms `PQ_SIGN_ML_DSA_44/65/87` and `PQ_SIGN_SLH_DSA_SHA2_128S` (purpose
  ASYMMETRIC_SIGN: `asymmetricSign` with `data`, the whole message, signed as pure
  ML-DSA / SLH-DSA with an empty context; a `digest` is INVALID_ARGUMENT) and
  `ML_KEM_768/1024` (purpose KEY_ENCAPSULATION: `decapsulate` with `ciphertext` and
  `ciphertextCrc32c`, answering `sharedSecret`, `sharedSecretCrc32c`,
  `verifiedCiphertextCrc32c`);
- `getPublicKey` of these versions needs `publicKeyFormat=NIST_PQC` (INVALID_ARGUMENT
  without it) and answers `publicKey: {data, crc32cChecksum}` (the raw FIPS 203/204/205
  public key) with `publicKeyFormat`, no `pem`;
- real cryptography: ML-DSA and ML-KEM from `cryptography` (aws-lc/OpenSSL), SLH-DSA from
  the `slh-dsa` package (FIPS 205; hedged signing with fresh randomness).
"""

import slhdsa
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

# name -> (purpose, kind, private key class)
ALGORITHMS = {
    "PQ_SIGN_ML_DSA_44": ("ASYMMETRIC_SIGN", "ml-dsa", mldsa.MLDSA44PrivateKey),
    "PQ_SIGN_ML_DSA_65": ("ASYMMETRIC_SIGN", "ml-dsa", mldsa.MLDSA65PrivateKey),
    "PQ_SIGN_ML_DSA_87": ("ASYMMETRIC_SIGN", "ml-dsa", mldsa.MLDSA87PrivateKey),
    "PQ_SIGN_SLH_DSA_SHA2_128S": ("ASYMMETRIC_SIGN", "slh-dsa", slhdsa.sha2_128s),
    "ML_KEM_768": ("KEY_ENCAPSULATION", "ml-kem", mlkem.MLKEM768PrivateKey),
    "ML_KEM_1024": ("KEY_ENCAPSULATION", "ml-kem", mlkem.MLKEM1024PrivateKey),
}
KINDS = ("ml-dsa", "slh-dsa", "ml-kem")


def generate(alg):
    _, kind, d = ALGORITHMS[alg]
    if kind == "slh-dsa":
        return slhdsa.KeyPair.gen(d)
    return d.generate()


def public_raw(kind, key):
    if kind == "slh-dsa":
        return key.pub.digest()
    return key.public_key().public_bytes_raw()


def sign(kind, key, data):
    if kind == "slh-dsa":
        return key.sign_pure(data, randomize=True)
    return key.sign(data)


def public_key_answer(v, kind, q, error, crc, b64e):
    """getPublicKey of a post-quantum version (`error(status, message)` raises)."""
    fmt = q.get("publicKeyFormat", [""])[0]
    if fmt != "NIST_PQC":
        error("INVALID_ARGUMENT",
              f"The public key format {fmt or 'PEM'} is not supported for algorithm {v['algorithm']}; use NIST_PQC.")
    raw = public_raw(kind, v["material"])
    return {"algorithm": v["algorithm"], "name": v["name"], "protectionLevel": v["protectionLevel"],
            "publicKeyFormat": "NIST_PQC", "publicKey": {"data": b64e(raw), "crc32cChecksum": str(crc(raw))}}


def decapsulate(key, ct, error):
    """The shared secret of an ML-KEM ciphertext (implicit rejection for a wrong one of the
    right length, as FIPS 203 says)."""
    try:
        return key.decapsulate(ct)
    except ValueError:
        error("INVALID_ARGUMENT", "The ciphertext has the wrong length for the key's algorithm.")
