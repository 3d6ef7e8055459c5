"""A faithful AWS KMS test server for hsmux's tests (AWS JSON 1.1, `TrentService.<Op>`),
written after the KMS API reference where moto is not faithful:

- `Sign` with `MessageType=DIGEST` signs the given digest as it is (moto hashes it again);
  the digest must have the algorithm's length (`ValidationException` otherwise);
- `RSASSA_PSS_*` uses MGF1 with the same hash and a salt as long as the digest;
- `Decrypt` with `RSAES_OAEP_SHA_1/256` is real RSA-OAEP (MGF1 of the same hash, no label);
  a ciphertext that does not decrypt is `InvalidCiphertextException`;
- `VerifyMac` with a wrong MAC is `KMSInvalidMacException` (HTTP 400);
- ML-DSA keys (`ML_DSA_44/65/87`, `SIGN_VERIFY`, signing algorithm `ML_DSA_SHAKE_256`):
  `MessageType=RAW` signs 1 to 4096 bytes as pure ML-DSA with an empty context,
  `EXTERNAL_MU` signs a 64-byte μ (FIPS 204 section 6.2: the same signature), `DIGEST` is
  refused (`ValidationException`), as is `EXTERNAL_MU` with any other key (real ML-DSA from
  `cryptography`'s aws-lc/OpenSSL backend).

Operations: CreateKey, CreateAlias, DescribeKey, GetPublicKey, ListKeys, ListAliases, Sign,
Verify, Encrypt (RSA only), Decrypt, GenerateMac, VerifyMac, DisableKey, EnableKey,
ScheduleKeyDeletion. Keys are named by key id, key ARN, alias name or alias ARN.
`POST /__import` (test control) makes an HMAC key with known material.
Faults (see awsjson.py) add `bad-answer`: Sign answers a signature that is not DER (or of
the wrong length for RSA), Decrypt a plaintext longer than OAEP allows, GenerateMac a MAC
one byte short, GetPublicKey bytes that are not a SubjectPublicKeyInfo.

Run: python kms_server.py --port 0 --access-key AKIDTEST [--region us-east-1]
"""

import base64
import hashlib
import hmac
import os
import sys
import threading
import time
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, padding, rsa, utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from awsjson import ApiError, args, serve  # noqa: E402

ACCOUNT = "111122223333"
REGION = "us-east-1"
LOCK = threading.Lock()
KEYS = {}  # key id -> dict
ALIASES = {}  # alias name -> key id

HASHES = {
    "SHA_1": hashes.SHA1,
    "SHA_256": hashes.SHA256,
    "SHA_384": hashes.SHA384,
    "SHA_512": hashes.SHA512,
}
SIGNING = {
    "RSA": [
        "RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
        "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
    ],
    "ECC_NIST_P256": ["ECDSA_SHA_256"],
    "ECC_NIST_P384": ["ECDSA_SHA_384"],
    "ML_DSA_44": ["ML_DSA_SHAKE_256"],
    "ML_DSA_65": ["ML_DSA_SHAKE_256"],
    "ML_DSA_87": ["ML_DSA_SHAKE_256"],
}
ML_DSA = {
    "ML_DSA_44": mldsa.MLDSA44PrivateKey,
    "ML_DSA_65": mldsa.MLDSA65PrivateKey,
    "ML_DSA_87": mldsa.MLDSA87PrivateKey,
}
MU_LEN = 64
MACS = {"HMAC_224": "HMAC_SHA_224", "HMAC_256": "HMAC_SHA_256", "HMAC_384": "HMAC_SHA_384", "HMAC_512": "HMAC_SHA_512"}
MAC_HASH = {"HMAC_SHA_224": hashlib.sha224, "HMAC_SHA_256": hashlib.sha256, "HMAC_SHA_384": hashlib.sha384, "HMAC_SHA_512": hashlib.sha512}


def b64(b):
    return base64.b64encode(b).decode()


def unb64(s, field):
    try:
        return base64.b64decode(s, validate=True)
    except Exception:
        raise ApiError("SerializationException", f"{field} is not base64")


def arn(key_id):
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"


def metadata(k):
    m = {
        "AWSAccountId": ACCOUNT,
        "KeyId": k["id"],
        "Arn": arn(k["id"]),
        "CreationDate": k["created"],
        "Enabled": k["state"] == "Enabled",
        "Description": k["description"],
        "KeyUsage": k["usage"],
        "KeyState": k["state"],
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": k["spec"],
        "KeySpec": k["spec"],
        "MultiRegion": False,
    }
    if k["state"] == "PendingDeletion":
        m["DeletionDate"] = k["deletion"]
    if k["usage"] == "SIGN_VERIFY":
        m["SigningAlgorithms"] = signing_algorithms(k)
    elif k["usage"] == "ENCRYPT_DECRYPT":
        m["EncryptionAlgorithms"] = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    elif k["usage"] == "GENERATE_VERIFY_MAC":
        m["MacAlgorithms"] = [MACS[k["spec"]]]
    return m


def signing_algorithms(k):
    return SIGNING["RSA"] if k["spec"].startswith("RSA_") else SIGNING[k["spec"]]


def find(name, usable=True):
    if not name:
        raise ApiError("ValidationException", "KeyId is required")
    with LOCK:
        key_id = name
        if name.startswith("arn:"):
            tail = name.split(":", 5)[-1]
            if tail.startswith("alias/"):
                key_id = ALIASES.get(tail)
            elif tail.startswith("key/"):
                key_id = tail[4:]
        elif name.startswith("alias/"):
            key_id = ALIASES.get(name)
        k = KEYS.get(key_id)
    if k is None:
        raise ApiError("NotFoundException", f"Invalid keyId {name}")
    if usable:
        if k["state"] == "Disabled":
            raise ApiError("DisabledException", f"{arn(k['id'])} is disabled.")
        if k["state"] != "Enabled":
            raise ApiError("KMSInvalidStateException", f"{arn(k['id'])} is pending deletion.")
    return k


def create_key(body, state, fault):
    spec = body.get("KeySpec") or body.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
    usage = body.get("KeyUsage") or ("GENERATE_VERIFY_MAC" if spec.startswith("HMAC") else "ENCRYPT_DECRYPT")
    if spec in ("RSA_2048", "RSA_3072", "RSA_4096"):
        if usage not in ("SIGN_VERIFY", "ENCRYPT_DECRYPT"):
            raise ApiError("ValidationException", f"KeyUsage {usage} is not compatible with KeySpec {spec}")
        priv = rsa.generate_private_key(public_exponent=65537, key_size=int(spec[4:]))
    elif spec in ("ECC_NIST_P256", "ECC_NIST_P384"):
        if usage != "SIGN_VERIFY":
            raise ApiError("ValidationException", f"KeyUsage {usage} is not compatible with KeySpec {spec}")
        priv = ec.generate_private_key(ec.SECP256R1() if spec == "ECC_NIST_P256" else ec.SECP384R1())
    elif spec in ML_DSA:
        if usage != "SIGN_VERIFY":
            raise ApiError("ValidationException", f"KeyUsage {usage} is not compatible with KeySpec {spec}")
        priv = ML_DSA[spec].generate()
    elif spec in MACS:
        if usage != "GENERATE_VERIFY_MAC":
            raise ApiError("ValidationException", f"KeyUsage {usage} is not compatible with KeySpec {spec}")
        priv = os.urandom(int(spec[5:]) // 8)
    elif spec == "SYMMETRIC_DEFAULT":
        priv = os.urandom(32)
    else:
        raise ApiError("ValidationException", f"KeySpec {spec} is not supported here")
    k = {
        "id": str(uuid.uuid4()),
        "spec": spec,
        "usage": usage,
        "state": "Enabled",
        "description": body.get("Description", ""),
        "created": time.time(),
        "priv": priv,
    }
    with LOCK:
        KEYS[k["id"]] = k
    return {"KeyMetadata": metadata(k)}


def create_alias(body, state, fault):
    name = body.get("AliasName", "")
    if not name.startswith("alias/") or name.startswith("alias/aws/"):
        raise ApiError("ValidationException", f"invalid alias name {name}")
    k = find(body.get("TargetKeyId"), usable=False)
    with LOCK:
        if name in ALIASES:
            raise ApiError("AlreadyExistsException", f"An alias with the name {arn(name)} already exists")
        ALIASES[name] = k["id"]
    return {}


def describe_key(body, state, fault):
    return {"KeyMetadata": metadata(find(body.get("KeyId"), usable=False))}


def public_der(k):
    return k["priv"].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def get_public_key(body, state, fault):
    k = find(body.get("KeyId"))
    if k["usage"] not in ("SIGN_VERIFY", "ENCRYPT_DECRYPT") or k["spec"] == "SYMMETRIC_DEFAULT":
        raise ApiError("UnsupportedOperationException", f"{arn(k['id'])} key usage is {k['usage']} which is not valid for GetPublicKey.")
    der = public_der(k)
    if fault and fault["fault"] == "bad-answer":
        der = b"\x30\x03\x02\x01\x00"
    out = {"KeyId": arn(k["id"]), "PublicKey": b64(der), "CustomerMasterKeySpec": k["spec"], "KeySpec": k["spec"], "KeyUsage": k["usage"]}
    md = metadata(k)
    for f in ("SigningAlgorithms", "EncryptionAlgorithms"):
        if f in md:
            out[f] = md[f]
    return out


def page(items, body):
    limit = int(body.get("Limit") or 100)
    start = int(body.get("Marker") or 0)
    chunk = items[start:start + limit]
    out = {"Truncated": start + limit < len(items)}
    if out["Truncated"]:
        out["NextMarker"] = str(start + limit)
    return chunk, out


def list_keys(body, state, fault):
    with LOCK:
        items = [{"KeyId": k["id"], "KeyArn": arn(k["id"])} for k in KEYS.values()]
    chunk, out = page(items, body)
    out["Keys"] = chunk
    return out


def list_aliases(body, state, fault):
    with LOCK:
        items = [{"AliasName": n, "AliasArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:{n}", "TargetKeyId": t} for n, t in sorted(ALIASES.items())]
    chunk, out = page(items, body)
    out["Aliases"] = chunk
    return out


def sign_params(k, alg):
    if k["usage"] != "SIGN_VERIFY":
        raise ApiError("InvalidKeyUsageException", f"{arn(k['id'])} key usage is {k['usage']} which is not valid for signing.")
    if alg not in signing_algorithms(k):
        raise ApiError("InvalidKeyUsageException", f"Algorithm {alg} is incompatible with key spec {k['spec']}.")
    if k["spec"] in ML_DSA:
        return None
    h = HASHES[alg.rsplit("_", 2)[-2] + "_" + alg.rsplit("_", 1)[-1]]()
    return h


def ml_dsa_message(body):
    """(message or mu, is_mu) of an ML-DSA Sign/Verify."""
    msg = unb64(body.get("Message", ""), "Message")
    if not 1 <= len(msg) <= 4096:
        raise ApiError("ValidationException", "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and 4096")
    kind = body.get("MessageType", "RAW")
    if kind == "RAW":
        return msg, False
    if kind == "EXTERNAL_MU":
        if len(msg) != MU_LEN:
            raise ApiError("ValidationException", "The message for MessageType EXTERNAL_MU must be 64 bytes.")
        return msg, True
    raise ApiError("ValidationException", f"MessageType {kind} is not valid for signing algorithm ML_DSA_SHAKE_256.")


def message_and_hash(body, h):
    msg = unb64(body.get("Message", ""), "Message")
    if not 1 <= len(msg) <= 4096:
        raise ApiError("ValidationException", "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and 4096")
    kind = body.get("MessageType", "RAW")
    if kind == "EXTERNAL_MU":
        raise ApiError("ValidationException", "MessageType EXTERNAL_MU is valid for ML-DSA keys only.")
    if kind == "DIGEST":
        if len(msg) != h.digest_size:
            raise ApiError("ValidationException", f"Digest is invalid length for algorithm {h.name}.")
        return msg, utils.Prehashed(h)
    if kind != "RAW":
        raise ApiError("ValidationException", f"MessageType {kind} is not RAW or DIGEST")
    return msg, h


def sig_args(k, alg, h, algo):
    if k["spec"].startswith("ECC"):
        return (ec.ECDSA(algo),)
    if "PSS" in alg:
        return (padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), algo)
    return (padding.PKCS1v15(), algo)


def sign(body, state, fault):
    k = find(body.get("KeyId"))
    alg = body.get("SigningAlgorithm", "")
    h = sign_params(k, alg)
    if k["spec"] in ML_DSA:
        msg, is_mu = ml_dsa_message(body)
        sig = k["priv"].sign_mu(msg) if is_mu else k["priv"].sign(msg)
    else:
        msg, algo = message_and_hash(body, h)
        sig = k["priv"].sign(msg, *sig_args(k, alg, h, algo))
    if fault and fault["fault"] == "bad-answer":
        sig = b"\x30\x05\x02\x01\x01\x02" if k["spec"].startswith("ECC") else sig[:-1]
    return {"KeyId": arn(k["id"]), "Signature": b64(sig), "SigningAlgorithm": alg}


def verify(body, state, fault):
    k = find(body.get("KeyId"))
    alg = body.get("SigningAlgorithm", "")
    h = sign_params(k, alg)
    sig = unb64(body.get("Signature", ""), "Signature")
    try:
        if k["spec"] in ML_DSA:
            msg, is_mu = ml_dsa_message(body)
            pub = k["priv"].public_key()
            pub.verify_mu(sig, msg) if is_mu else pub.verify(sig, msg)
        else:
            msg, algo = message_and_hash(body, h)
            k["priv"].public_key().verify(sig, msg, *sig_args(k, alg, h, algo))
    except InvalidSignature:
        raise ApiError("KMSInvalidSignatureException", "")
    return {"KeyId": arn(k["id"]), "SignatureValid": True, "SigningAlgorithm": alg}


def oaep(k, body):
    if k["usage"] != "ENCRYPT_DECRYPT" or not k["spec"].startswith("RSA"):
        raise ApiError("InvalidKeyUsageException", f"{arn(k['id'])} key usage is {k['usage']} which is not valid for this operation.")
    alg = body.get("EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
    if alg not in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"):
        raise ApiError("InvalidKeyUsageException", f"Algorithm {alg} is incompatible with key spec {k['spec']}.")
    h = hashes.SHA1() if alg.endswith("SHA_1") else hashes.SHA256()
    return alg, padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)


def encrypt(body, state, fault):
    k = find(body.get("KeyId"))
    alg, pad = oaep(k, body)
    ct = k["priv"].public_key().encrypt(unb64(body.get("Plaintext", ""), "Plaintext"), pad)
    return {"KeyId": arn(k["id"]), "CiphertextBlob": b64(ct), "EncryptionAlgorithm": alg}


def decrypt(body, state, fault):
    if not body.get("KeyId"):
        raise ApiError("ValidationException", "KeyId is required for asymmetric keys")
    k = find(body.get("KeyId"))
    alg, pad = oaep(k, body)
    try:
        pt = k["priv"].decrypt(unb64(body.get("CiphertextBlob", ""), "CiphertextBlob"), pad)
    except ValueError:
        raise ApiError("InvalidCiphertextException", "")
    if fault and fault["fault"] == "bad-answer":
        pt = b"\x00" * (k["priv"].key_size // 8)
    return {"KeyId": arn(k["id"]), "Plaintext": b64(pt), "EncryptionAlgorithm": alg}


def mac_of(k, body):
    if k["usage"] != "GENERATE_VERIFY_MAC":
        raise ApiError("InvalidKeyUsageException", f"{arn(k['id'])} key usage is {k['usage']} which is not valid for this operation.")
    alg = body.get("MacAlgorithm", "")
    if alg != MACS[k["spec"]]:
        raise ApiError("InvalidKeyUsageException", f"Algorithm {alg} is incompatible with key spec {k['spec']}.")
    msg = unb64(body.get("Message", ""), "Message")
    if not 1 <= len(msg) <= 4096:
        raise ApiError("ValidationException", "Message must have length between 1 and 4096")
    return alg, hmac.new(k["priv"], msg, MAC_HASH[alg]).digest()


def generate_mac(body, state, fault):
    k = find(body.get("KeyId"))
    alg, mac = mac_of(k, body)
    if fault and fault["fault"] == "bad-answer":
        mac = mac[:-1]
    return {"KeyId": arn(k["id"]), "Mac": b64(mac), "MacAlgorithm": alg}


def verify_mac(body, state, fault):
    k = find(body.get("KeyId"))
    alg, mac = mac_of(k, body)
    if not hmac.compare_digest(mac, unb64(body.get("Mac", ""), "Mac")):
        raise ApiError("KMSInvalidMacException", "")
    return {"KeyId": arn(k["id"]), "MacValid": True, "MacAlgorithm": alg}


def set_state(new):
    def op(body, state, fault):
        k = find(body.get("KeyId"), usable=False)
        with LOCK:
            k["state"] = new
            if new == "PendingDeletion":
                days = int(body.get("PendingWindowInDays") or 30)
                k["deletion"] = time.time() + days * 86400
        if new == "PendingDeletion":
            return {"KeyId": arn(k["id"]), "DeletionDate": k["deletion"], "KeyState": new, "PendingWindowInDays": days}
        return {}
    return op


def import_key(body):
    """Test control (not a KMS operation): a key with the given material, so that a test
    can check MACs with an independent implementation. {spec, usage, material: b64 (HMAC
    bytes), alias?}"""
    k = create_key({"KeySpec": body["spec"], "KeyUsage": body["usage"]}, None, None)["KeyMetadata"]
    with LOCK:
        KEYS[k["KeyId"]]["priv"] = base64.b64decode(body["material"])
        if body.get("alias"):
            ALIASES[body["alias"]] = k["KeyId"]
    return {"KeyId": k["KeyId"], "Arn": k["Arn"]}


OPERATIONS = {
    "CreateKey": create_key,
    "CreateAlias": create_alias,
    "DescribeKey": describe_key,
    "GetPublicKey": get_public_key,
    "ListKeys": list_keys,
    "ListAliases": list_aliases,
    "Sign": sign,
    "Verify": verify,
    "Encrypt": encrypt,
    "Decrypt": decrypt,
    "GenerateMac": generate_mac,
    "VerifyMac": verify_mac,
    "DisableKey": set_state("Disabled"),
    "EnableKey": set_state("Enabled"),
    "ScheduleKeyDeletion": set_state("PendingDeletion"),
}

if __name__ == "__main__":
    a = args(sys.argv)
    for name, value in a["extra"]:
        if name == "--region":
            REGION = value
    serve("TrentService", OPERATIONS, a["access_keys"], a["port"], {"/__import": import_key})
