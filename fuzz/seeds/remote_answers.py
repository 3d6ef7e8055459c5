#!/usr/bin/env python3
"""Writes the seed corpus of the remote_answers target: service answers shaped like the
published APIs (Vault/OpenBao transit, Google Cloud KMS REST v1, AWS KMS), with real keys
and signatures made here. Each file: byte 0 the service (0 Vault, 1 Cloud KMS, 2 AWS),
byte 1 the answer kind (see hsmux::fuzzing), then the body. Usage: remote_answers.py DIR"""
import base64, json, os, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def write(name, service, kind, body):
    if isinstance(body, (dict, list)):
        body = json.dumps(body, indent=1).encode()
    elif isinstance(body, str):
        body = body.encode()
    with open(os.path.join(out, f"seed-{name}"), "wb") as f:
        f.write(bytes([service, kind]) + body)


p256 = ec.generate_private_key(ec.SECP256R1())
p384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()
rk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
spki = lambda k: k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
pem = lambda k: k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
sig256 = p256.sign(b"hello", ec.ECDSA(hashes.SHA256()))
sig384 = p384.sign(b"hello", ec.ECDSA(hashes.SHA384()))
ed_raw = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def vault(data):
    return {"request_id": "7f0d0d6c-3a5e-4a3c-9d5f-1b1e2f3a4b5c", "lease_id": "", "renewable": False,
            "lease_duration": 0, "data": data, "wrap_info": None, "warnings": None, "auth": None}


# ---- Vault / OpenBao transit
write("vault-sign-p256", 0, 0, vault({"key_version": 1, "signature": "vault:v1:" + b64(sig256)}))
write("vault-sign-ed25519", 0, 0, vault({"key_version": 2, "signature": "vault:v2:" + b64(ed.sign(b"hello"))}))
write("vault-hmac", 0, 1, vault({"hmac": "vault:v1:" + b64(bytes(range(32)))}))
write("vault-encrypt", 0, 2, vault({"ciphertext": "vault:v3:" + b64(os.urandom(12 + 5 + 16)), "key_version": 3}))
write("vault-decrypt", 0, 3, vault({"plaintext": b64(b"hello")}))
key_times = {"creation_time": "2026-12-06T19:00:00.000000000Z"}
write("vault-key-ec", 0, 4, vault({
    "type": "ecdsa-p256", "name": "fz-ec", "latest_version": 2, "min_decryption_version": 1,
    "min_available_version": 0, "supports_signing": True, "exportable": False,
    "keys": {"1": dict(key_times, name="P-256", public_key=pem(p256)),
             "2": dict(key_times, name="P-256", public_key=pem(p256))}}))
write("vault-key-ed25519", 0, 4, vault({
    "type": "ed25519", "name": "fz-ed", "latest_version": 1, "min_decryption_version": 1,
    "keys": {"1": dict(key_times, name="ed25519", public_key=b64(ed_raw))}}))
write("vault-key-rsa", 0, 4, vault({
    "type": "rsa-2048", "name": "fz-rsa", "latest_version": 1, "min_decryption_version": 1,
    "keys": {"1": dict(key_times, name="rsa-2048", public_key=pem(rk))}}))
write("vault-key-aes", 0, 4, vault({
    "type": "aes256-gcm96", "name": "fz-aes", "latest_version": 4, "min_decryption_version": 2,
    "keys": {"2": 1765047600, "3": 1765047601, "4": 1765047602}}))
write("vault-error", 0, 5, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]})
write("vault-versioned", 0, 6, "vault:v12:" + b64(b"\x00\x01\x02"))

# ---- Google Cloud KMS
ver = "projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"
write("gcp-sign", 1, 0, {"signature": b64(sig256), "signatureCrc32c": str(crc32c(sig256)),
                         "verifiedDigestCrc32c": True, "name": ver, "protectionLevel": "HSM"})
mac = os.urandom(32)
write("gcp-macsign", 1, 1, {"name": ver, "mac": b64(mac), "macCrc32c": str(crc32c(mac)),
                            "verifiedDataCrc32c": True, "protectionLevel": "SOFTWARE"})
write("gcp-decrypt", 1, 2, {"plaintext": b64(b"hello"), "plaintextCrc32c": str(crc32c(b"hello")),
                            "usedPrimary": True, "protectionLevel": "HSM"})
ct, iv = os.urandom(5 + 16), os.urandom(12)
write("gcp-rawencrypt", 1, 3, {"ciphertext": b64(ct), "initializationVector": b64(iv), "tagLength": 16,
                               "ciphertextCrc32c": str(crc32c(ct)), "initializationVectorCrc32c": str(crc32c(iv)),
                               "verifiedPlaintextCrc32c": True,
                               "verifiedAdditionalAuthenticatedDataCrc32c": True, "name": ver,
                               "protectionLevel": "HSM"})
write("gcp-rawdecrypt", 1, 4, {"plaintext": b64(b"hello"), "plaintextCrc32c": str(crc32c(b"hello")),
                               "verifiedCiphertextCrc32c": True,
                               "verifiedAdditionalAuthenticatedDataCrc32c": True,
                               "verifiedInitializationVectorCrc32c": True, "protectionLevel": "HSM"})
for name, k, alg in [("p256", p256, "EC_SIGN_P256_SHA256"), ("p384", p384, "EC_SIGN_P384_SHA384"),
                     ("rsa", rk, "RSA_SIGN_PSS_2048_SHA256"), ("ed25519", ed, "EC_SIGN_ED25519")]:
    text = pem(k)
    write(f"gcp-publickey-{name}", 1, 5, {"pem": text, "algorithm": alg, "pemCrc32c": str(crc32c(text.encode())),
                                          "name": ver, "protectionLevel": "HSM"})
write("gcp-list-keys", 1, 6, {"cryptoKeys": [
    {"name": "projects/p/locations/global/keyRings/r/cryptoKeys/k", "purpose": "ASYMMETRIC_SIGN",
     "createTime": "2026-12-06T19:00:00.000000Z",
     "versionTemplate": {"protectionLevel": "HSM", "algorithm": "EC_SIGN_P256_SHA256"}},
    {"name": "projects/p/locations/global/keyRings/r/cryptoKeys/aes", "purpose": "RAW_ENCRYPT_DECRYPT",
     "primary": {"name": "projects/p/locations/global/keyRings/r/cryptoKeys/aes/cryptoKeyVersions/1",
                 "state": "ENABLED", "protectionLevel": "HSM", "algorithm": "AES_256_GCM"},
     "versionTemplate": {"protectionLevel": "HSM", "algorithm": "AES_256_GCM"}}],
    "nextPageToken": "", "totalSize": 2})
write("gcp-list-versions", 1, 7, {"cryptoKeyVersions": [
    {"name": ver, "state": "ENABLED", "protectionLevel": "HSM", "algorithm": "EC_SIGN_P256_SHA256"},
    {"name": ver[:-1] + "2", "state": "ENABLED", "protectionLevel": "SOFTWARE", "algorithm": "HMAC_SHA256"}],
    "totalSize": 2})
write("gcp-error", 1, 8, b'\x91' + json.dumps({"error": {"code": 403, "message": "Permission 'cloudkms.cryptoKeyVersions.useToSign' denied", "status": "PERMISSION_DENIED"}}).encode())
write("gcp-macverify", 1, 9, {"name": ver, "success": True, "verifiedDataCrc32c": True,
                              "verifiedMacCrc32c": True, "verifiedSuccessIntegrity": True})

# ---- AWS KMS (bytes hsmux decodes itself; kind: %3 == 0 SPKI, 1 ECDSA DER, 2 PEM)
write("aws-spki-p256", 2, 0, spki(p256))
write("aws-spki-p384", 2, 3, spki(p384))
write("aws-spki-rsa", 2, 6, spki(rk))
write("aws-spki-ed25519", 2, 9, spki(ed))
write("aws-ecdsa-p256", 2, 1, sig256)          # kind 1: (1 >> 2) & 1 == 0 -> P-256
write("aws-ecdsa-p384", 2, 4, sig384)          # kind 4: 4 % 3 == 1, (4 >> 2) & 1 == 1 -> P-384
write("aws-pem-rsa", 2, 2, pem(rk))
