#!/usr/bin/env python3
"""A stand-in for Google Cloud KMS REST v1 and Google's OAuth2 token endpoint, for the
tests of hsmux's gcp-kms backend.

What it follows from the published API:
- paths `/v1/projects/*/locations/*/keyRings/*[/cryptoKeys/*[/cryptoKeyVersions/*]]`,
  custom verbs `:asymmetricSign`, `:asymmetricDecrypt`, `:macSign`, `:macVerify`,
  `:rawEncrypt`, `:rawDecrypt`, `:decapsulate`, and `/publicKey`; post-quantum keys
  (ML-DSA, SLH-DSA, ML-KEM) as gcpkms_pqc.py describes; list calls with pageSize/pageToken and
  `filter=state=ENABLED`; cryptoKeys.create with `cryptoKeyId`; cryptoKeyVersions.create;
  cryptoKeyVersions.patch with `updateMask=state`;
- proto3 JSON: camelCase names, bytes as base64, Int64Value checksums as decimal strings,
  default values (false, empty) left out;
- CRC32C: each `*Crc32c` a request carries is checked (a mismatch is INVALID_ARGUMENT, as
  the service answers) and reported in `verified*Crc32c`; each byte field of an answer has
  its checksum;
- errors as `{"error": {"code", "message", "status"}}` with the canonical HTTP codes;
- no long-running operations: a new version is ENABLED at once;
- real cryptography (`cryptography`): ECDSA P-256/P-384 (DER signatures over the digest
  given), RSA PKCS#1 v1.5 / PSS (salt = digest length) signatures and OAEP decryption,
  Ed25519, HMAC, AES-GCM raw encryption with a fresh random 12-byte IV; protection levels,
  with the HSM limit of 8 KiB of plaintext + AAD for raw encryption;
- OAuth2: `POST /token` takes the JWT-bearer grant made from the service-account file it
  writes (RS256 signature checked with the account's public key, iss/aud/exp/scope
  checked) and answers access_token/expires_in; every KMS call needs a live Bearer token.

Test controls (not part of the API), under /__control/:
  POST fault    {"kind", "count", "match", "delay_ms"}: the next `count` KMS calls whose
                path contains `match` get the fault: unavailable (503), internal (500),
                delay, bad_json, corrupt_data (a payload bit flipped, checksum kept),
                corrupt_crc, unverified (verified* flags false), wrong_length, wrong_name,
                unauthenticated (401), flip_success (macVerify's verdict inverted)
  POST clear    drop the pending faults
  POST token    {"expires_in"}: lifetime of the tokens granted from now on
  POST revoke   forget every token granted so far (the next call is UNAUTHENTICATED)
  POST state    {"name", "state"}: set a version's state
  POST delete   {"name"}: remove a crypto key
  POST deny     {"name"}: PERMISSION_DENIED on everything under that name
  POST material {"name"}: a symmetric version's key bytes (tests check MACs and
                ciphertexts with independent code)
  GET  stats    {"token_grants", "calls": {path: n}}

Usage: gcpkms_server.py --port P --sa-out FILE [--rogue-sa-out FILE] [--seed FILE]
       [--expires-in N]
The seed file: {"keys": [{"name": "projects/p/locations/l/keyRings/r/cryptoKeys/k",
"algorithm": "EC_SIGN_P256_SHA256", "protectionLevel": "HSM", "versions": 1,
"disabled": [2]}]}. A key ring exists once a key in it is seeded.
"""

import argparse
import base64
import datetime
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import google_crc32c
from fakeserver_common import FaultList, JsonHandler
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcpkms_pqc as pqc  # noqa: E402

SCOPES_OK = ("https://www.googleapis.com/auth/cloudkms", "https://www.googleapis.com/auth/cloud-platform")
HASHES = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256, "SHA384": hashes.SHA384,
          "SHA512": hashes.SHA512, "SHA224": hashes.SHA224}
DIGEST_FIELDS = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
RAW_MAX = 64 * 1024
RAW_HSM_MAX = 8 * 1024
KEY_ID = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")


def crc(b):
    return google_crc32c.value(b)


def b64e(b):
    return base64.b64encode(b).decode()


def b64d(s):
    s = s.strip()
    s += "=" * (-len(s) % 4)
    if "-" in s or "_" in s:
        return base64.urlsafe_b64decode(s)
    return base64.b64decode(s, validate=True)


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiError(Exception):
    CODES = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
             "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
             "ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500,
             "UNAVAILABLE": 503}

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.code = self.CODES[status]
        self.message = message

    def body(self):
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def algorithm_info(alg):
    """(purpose, kind, details) of a CryptoKeyVersionAlgorithm, or None."""
    m = re.fullmatch(r"RSA_SIGN_(PSS|PKCS1)_(2048|3072|4096)_(SHA256|SHA512)", alg)
    if m:
        return "ASYMMETRIC_SIGN", "rsa-" + m.group(1).lower(), (int(m.group(2)), HASHES[m.group(3)])
    m = re.fullmatch(r"RSA_DECRYPT_OAEP_(2048|3072|4096)_(SHA1|SHA256|SHA512)", alg)
    if m:
        return "ASYMMETRIC_DECRYPT", "rsa-oaep", (int(m.group(1)), HASHES[m.group(2)])
    if alg in pqc.ALGORITHMS:
        return pqc.ALGORITHMS[alg]
    m = re.fullmatch(r"HMAC_(SHA1|SHA224|SHA256|SHA384|SHA512)", alg)
    if m:
        return "MAC", "hmac", HASHES[m.group(1)]
    return {
        "EC_SIGN_P256_SHA256": ("ASYMMETRIC_SIGN", "ec", (ec.SECP256R1, hashes.SHA256)),
        "EC_SIGN_P384_SHA384": ("ASYMMETRIC_SIGN", "ec", (ec.SECP384R1, hashes.SHA384)),
        "EC_SIGN_ED25519": ("ASYMMETRIC_SIGN", "ed25519", None),
        "AES_128_GCM": ("RAW_ENCRYPT_DECRYPT", "aes-gcm", 16),
        "AES_256_GCM": ("RAW_ENCRYPT_DECRYPT", "aes-gcm", 32),
        "AES_256_CBC": ("RAW_ENCRYPT_DECRYPT", "aes-cbc", 32),
        "GOOGLE_SYMMETRIC_ENCRYPTION": ("ENCRYPT_DECRYPT", "google", 32),
    }.get(alg)


def generate_material(alg):
    purpose, kind, d = algorithm_info(alg)
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=d[0])
    if kind == "ec":
        return ec.generate_private_key(d[0]())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "hmac":
        return os.urandom(d.digest_size)
    if kind in pqc.KINDS:
        return pqc.generate(alg)
    return os.urandom(d)


class Kms:
    def __init__(self, expires_in):
        self.lock = threading.RLock()
        self.rings = {}
        self.keys = {}  # key name -> dict
        self.tokens = {}  # access token -> expiry (epoch seconds)
        self.expires_in = expires_in
        self.token_grants = 0
        self.calls = {}
        self.faults = FaultList()
        self.denied = set()

    # ---- resources ----------------------------------------------------------------------
    def create_key(self, ring, key_id, purpose, algorithm, protection, versions=1):
        name = f"{ring}/cryptoKeys/{key_id}"
        info = algorithm_info(algorithm)
        if info is None:
            raise ApiError("INVALID_ARGUMENT", f"Unsupported algorithm {algorithm}.")
        if info[0] != purpose:
            raise ApiError("INVALID_ARGUMENT",
                           f"Algorithm {algorithm} is not compatible with purpose {purpose}.")
        if protection not in ("SOFTWARE", "HSM"):
            raise ApiError("INVALID_ARGUMENT", f"Unsupported protection level {protection}.")
        with self.lock:
            if name in self.keys:
                raise ApiError("ALREADY_EXISTS", f"CryptoKey {name} already exists.")
            self.keys[name] = {"name": name, "purpose": purpose, "createTime": now_rfc3339(),
                               "versionTemplate": {"protectionLevel": protection, "algorithm": algorithm},
                               "versions": [], "primary": None}
        for _ in range(versions):
            self.create_version(name)
        return self.key_json(name)

    def create_version(self, key_name):
        with self.lock:
            k = self.key(key_name)
            tpl = k["versionTemplate"]
            number = len(k["versions"]) + 1
        material = generate_material(tpl["algorithm"])
        with self.lock:
            v = {"name": f"{key_name}/cryptoKeyVersions/{number}", "state": "ENABLED",
                 "protectionLevel": tpl["protectionLevel"], "algorithm": tpl["algorithm"],
                 "createTime": now_rfc3339(), "generateTime": now_rfc3339(), "material": material}
            k["versions"].append(v)
            if k["purpose"] == "ENCRYPT_DECRYPT" and k["primary"] is None:
                k["primary"] = v["name"]
            return self.version_json(v)

    def key(self, name):
        k = self.keys.get(name)
        if k is None:
            raise ApiError("NOT_FOUND", f"CryptoKey {name} not found.")
        return k

    def version(self, name):
        key_name, _, number = name.rpartition("/cryptoKeyVersions/")
        k = self.key(key_name)
        for v in k["versions"]:
            if v["name"] == name:
                return k, v
        raise ApiError("NOT_FOUND", f"CryptoKeyVersion {name} not found.")

    @staticmethod
    def version_json(v):
        return {x: v[x] for x in ("name", "state", "protectionLevel", "algorithm", "createTime",
                                  "generateTime")}

    def key_json(self, name):
        k = self.keys[name]
        out = {x: k[x] for x in ("name", "purpose", "createTime", "versionTemplate")}
        if k["primary"]:
            _, v = self.version(k["primary"])
            out["primary"] = self.version_json(v)
        return out

    def usable(self, name, purpose):
        k, v = self.version(name)
        if v["state"] != "ENABLED":
            raise ApiError("FAILED_PRECONDITION",
                           f"The request cannot be fulfilled. Resource {name} has value "
                           f"{v['state']} in field crypto_key_version.state.")
        if k["purpose"] != purpose:
            raise ApiError("FAILED_PRECONDITION",
                           f"Operation requested for Key {k['name']} has incorrect key purpose: "
                           f"{k['purpose']}")
        return v


def page(items, q, field):
    size = int(q.get("pageSize", ["0"])[0] or 0) or 1000
    start = 0
    token = q.get("pageToken", [""])[0]
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except Exception:
            raise ApiError("INVALID_ARGUMENT", "Invalid page token.")
    chunk = items[start:start + size]
    out = {field: chunk, "totalSize": len(items)} if chunk else {"totalSize": len(items)}
    if start + size < len(items):
        out["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return out


def field_bytes(body, name, required=True):
    v = body.get(name)
    if v is None or v == "":
        if required:
            raise ApiError("INVALID_ARGUMENT", f"Missing required field {name}.")
        return b""
    try:
        return b64d(v)
    except Exception:
        raise ApiError("INVALID_ARGUMENT", f"Invalid value at '{name}' (TYPE_BYTES).")


def checked(body, field, data):
    """Checks `<field>Crc32c` when sent; True when it was sent and verified."""
    c = body.get(field + "Crc32c")
    if c is None:
        return False
    try:
        c = int(c)
    except (TypeError, ValueError):
        raise ApiError("INVALID_ARGUMENT", f"Invalid value at '{field}Crc32c' (TYPE_INT64).")
    if c != crc(data):
        snake = re.sub(r"([A-Z])", r"_\1", field).lower()
        raise ApiError("INVALID_ARGUMENT",
                       f"The checksum in field {snake}_crc32c did not match the data in field {snake}.")
    return True


def put_verified(out, name, flag):
    # proto3 JSON leaves a false bool out
    if flag:
        out[name] = True


class Handler(JsonHandler):
    server_version = "ESF"
    status_headers = {401: {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}}

    @staticmethod
    def fail(status, message):
        raise ApiError(status, message)

    def dispatch(self, method):
        kms = self.server.kms
        url = urlsplit(self.path)
        raw = self.read_body()
        try:
            if url.path.startswith("/__control/"):
                return self.control(method, url.path[len("/__control/"):], raw)
            if url.path == "/token" and method == "POST":
                return self.token(raw)
            if not url.path.startswith("/v1/"):
                raise ApiError("NOT_FOUND", f"The requested URL {url.path} was not found.")
            path = url.path[len("/v1/"):]
            with kms.lock:
                kms.calls[path] = kms.calls.get(path, 0) + 1
            self.authenticate()
            with kms.lock:
                fault = kms.faults.take(path)
            if fault and fault["kind"] == "delay":
                time.sleep(fault.get("delay_ms", 1000) / 1000)
            if fault and fault["kind"] in ("unavailable", "internal", "unauthenticated"):
                st, msg = {"unavailable": ("UNAVAILABLE", "The service is currently unavailable."),
                           "internal": ("INTERNAL", "Internal error encountered."),
                           "unauthenticated": ("UNAUTHENTICATED",
                                               "Request had invalid authentication credentials.")
                           }[fault["kind"]]
                raise ApiError(st, msg)
            for d in kms.denied:
                if path == d or path.startswith(d + "/") or path.startswith(d + ":"):
                    raise ApiError("PERMISSION_DENIED",
                                   f"Permission denied on resource '{d}' (or it may not exist).")
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise ApiError("INVALID_ARGUMENT", "Invalid JSON payload received.")
            out = self.kms_call(method, path, parse_qs(url.query), body)
            if fault:
                out = self.tamper(fault, path, out)
                if isinstance(out, bytes):
                    return self.reply(200, None, raw=out)
            self.reply(200, out)
        except ApiError as e:
            self.reply(e.code, e.body())
        except json.JSONDecodeError as e:
            self.reply(400, ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. {e}").body())

    def authenticate(self):
        kms = self.server.kms
        h = self.headers.get("Authorization", "")
        tok = h[7:] if h.startswith("Bearer ") else None
        with kms.lock:
            exp = kms.tokens.get(tok) if tok else None
        if exp is None or exp <= time.time():
            raise ApiError("UNAUTHENTICATED",
                           "Request had invalid authentication credentials. Expected OAuth 2 access "
                           "token, login cookie or other valid authentication credential.")

    # ---- OAuth2 -------------------------------------------------------------------------
    def token(self, raw):
        kms = self.server.kms
        form = parse_qs(raw.decode())

        def refuse(desc):
            self.reply(400, {"error": "invalid_grant", "error_description": desc})

        if form.get("grant_type", [""])[0] != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self.reply(400, {"error": "unsupported_grant_type",
                                    "error_description": "Invalid grant_type"})
        jwt = form.get("assertion", [""])[0]
        parts = jwt.split(".")
        if len(parts) != 3:
            return refuse("Invalid JWT: not three parts")
        try:
            header = json.loads(b64d(parts[0]))
            claims = json.loads(b64d(parts[1]))
            sig = b64d(parts[2])
        except Exception:
            return refuse("Invalid JWT: bad encoding")
        if header.get("alg") != "RS256":
            return refuse("Invalid JWT: alg must be RS256")
        try:
            self.server.sa_public.verify(sig, (parts[0] + "." + parts[1]).encode(),
                                         padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return refuse("Invalid JWT Signature.")
        t = time.time()
        if claims.get("iss") != self.server.sa_email:
            return refuse("Invalid issuer")
        if claims.get("aud") != self.server.token_uri:
            return refuse("Invalid JWT: aud is not the token URI")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < t:
            return refuse("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
        if not isinstance(claims.get("iat"), int) or claims["iat"] > t + 60 or claims["exp"] - claims["iat"] > 3600:
            return refuse("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
        scopes = str(claims.get("scope", "")).split()
        if not any(s in SCOPES_OK for s in scopes):
            return self.reply(400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope"})
        access = "ya29." + secrets.token_urlsafe(48)
        with kms.lock:
            kms.tokens[access] = t + kms.expires_in
            kms.token_grants += 1
            expires_in = kms.expires_in
        self.reply(200, {"access_token": access, "expires_in": expires_in, "token_type": "Bearer"})

    # ---- test controls ------------------------------------------------------------------
    def control(self, method, what, raw):
        kms = self.server.kms
        body = json.loads(raw) if raw else {}
        with kms.lock:
            if what == "stats":
                return self.reply(200, {"token_grants": kms.token_grants, "calls": kms.calls})
            if what == "material":
                # a symmetric version's key bytes, so that tests can check HMACs and
                # ciphertexts with their own implementations
                _, v = kms.version(body["name"])
                if not isinstance(v["material"], bytes):
                    return self.reply(400, {"error": "not a symmetric key"})
                return self.reply(200, {"key": b64e(v["material"])})
            if what == "fault":
                kms.faults.add({"kind": body["kind"], "count": int(body.get("count", 1)),
                                "match": body.get("match", ""),
                                "delay_ms": int(body.get("delay_ms", 1000))})
            elif what == "clear":
                kms.faults.clear()
            elif what == "token":
                kms.expires_in = int(body["expires_in"])
            elif what == "revoke":
                kms.tokens.clear()
            elif what == "state":
                _, v = kms.version(body["name"])
                v["state"] = body["state"]
            elif what == "delete":
                kms.keys.pop(body["name"], None)
            elif what == "deny":
                kms.denied.add(body["name"])
            else:
                return self.reply(404, {"error": "no such control"})
        self.reply(200, {})

    def tamper(self, fault, path, out):
        kind = fault["kind"]
        if kind == "bad_json":
            return json.dumps(out).encode()[: max(1, len(json.dumps(out)) // 2)]
        payloads = ("signature", "mac", "plaintext", "ciphertext", "sharedSecret", "pem")
        if kind == "corrupt_data":
            for f in payloads:
                if out.get(f):
                    if f == "pem":
                        # a changed base64 letter inside the PEM body
                        lines = out["pem"].split("\n")
                        lines[1] = ("B" if lines[1][0] != "B" else "C") + lines[1][1:]
                        out["pem"] = "\n".join(lines)
                    else:
                        b = bytearray(b64d(out[f]))
                        b[len(b) // 2] ^= 0x01
                        out[f] = b64e(bytes(b))
                    break
        elif kind == "corrupt_crc":
            for f in list(out):
                if f.endswith("Crc32c") and not f.startswith("verified"):
                    out[f] = str((int(out[f]) + 1) % 2**32)
                    break
        elif kind == "unverified":
            for f in list(out):
                if f.startswith("verified"):
                    del out[f]
        elif kind == "wrong_length":
            # shortened (or, for a plaintext, grown past anything the key could have
            # encrypted: an OAEP plaintext has no fixed length) with a checksum that
            # matches, so that only a length check can see it
            for f in ("signature", "mac", "initializationVector", "plaintext"):
                if out.get(f):
                    b = b64d(out[f])
                    b = b[:-1] if f != "plaintext" else b + b"\x00" * 300
                    out[f] = b64e(b)
                    out[f + "Crc32c"] = str(crc(b))
                    break
        elif kind == "flip_success":
            # macVerify's verdict changed, its integrity flag not
            if out.get("success"):
                del out["success"]
            else:
                out["success"] = True
        elif kind == "wrong_name":
            if "name" in out:
                out["name"] = re.sub(r"cryptoKeyVersions/\d+$", "cryptoKeyVersions/999", out["name"])
        return out

    # ---- the API ------------------------------------------------------------------------
    def kms_call(self, method, path, q, body):
        kms = self.server.kms
        verb = None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, verb = path.rsplit(":", 1)
        segs = path.split("/")
        if len(segs) < 6 or segs[0] != "projects" or segs[2] != "locations" or segs[4] != "keyRings":
            raise ApiError("NOT_FOUND", f"The requested URL /v1/{path} was not found.")
        ring = "/".join(segs[:6])
        with kms.lock:
            if ring not in kms.rings:
                raise ApiError("NOT_FOUND", f"KeyRing {ring} not found.")
        rest = segs[6:]
        if verb:
            if len(rest) != 4 or rest[0] != "cryptoKeys" or rest[2] != "cryptoKeyVersions" or method != "POST":
                raise ApiError("NOT_FOUND", f"The requested URL /v1/{path}:{verb} was not found.")
            return self.crypto(verb, path, body)
        if rest == [] and method == "GET":
            return {"name": ring, "createTime": kms.rings[ring]}
        if rest == ["cryptoKeys"] and method == "GET":
            with kms.lock:
                names = sorted(n for n in kms.keys if n.startswith(ring + "/cryptoKeys/"))
                items = [kms.key_json(n) for n in names]
            return page(items, q, "cryptoKeys")
        if rest == ["cryptoKeys"] and method == "POST":
            key_id = q.get("cryptoKeyId", [""])[0]
            if not KEY_ID.match(key_id):
                raise ApiError("INVALID_ARGUMENT", f"Invalid cryptoKeyId {key_id!r}.")
            tpl = body.get("versionTemplate") or {}
            purpose = body.get("purpose", "")
            alg = tpl.get("algorithm") or ("GOOGLE_SYMMETRIC_ENCRYPTION" if purpose == "ENCRYPT_DECRYPT" else "")
            skip = q.get("skipInitialVersionCreation", ["false"])[0] == "true"
            return kms.create_key(ring, key_id, purpose, alg, tpl.get("protectionLevel", "SOFTWARE"),
                                  0 if skip else 1)
        key = "/".join(segs[:8])
        if len(rest) == 2 and rest[0] == "cryptoKeys" and method == "GET":
            with kms.lock:
                kms.key(key)
                return kms.key_json(key)
        if len(rest) == 3 and rest[2] == "cryptoKeyVersions":
            if method == "GET":
                with kms.lock:
                    vs = [kms.version_json(v) for v in kms.key(key)["versions"]]
                flt = q.get("filter", [""])[0].replace(" ", "")
                m = re.fullmatch(r"state[=:]([A-Z_]+)", flt)
                if m:
                    vs = [v for v in vs if v["state"] == m.group(1)]
                elif flt:
                    raise ApiError("INVALID_ARGUMENT", f"Invalid filter {flt!r}.")
                return page(vs, q, "cryptoKeyVersions")
            if method == "POST":
                return kms.create_version(key)
        if len(rest) == 4 and rest[2] == "cryptoKeyVersions":
            with kms.lock:
                k, v = kms.version(path)
                if method == "GET":
                    return kms.version_json(v)
                if method == "PATCH" and q.get("updateMask", [""])[0] == "state":
                    if body.get("state") not in ("ENABLED", "DISABLED"):
                        raise ApiError("INVALID_ARGUMENT", "state must be ENABLED or DISABLED.")
                    v["state"] = body["state"]
                    return kms.version_json(v)
        if len(rest) == 5 and rest[4] == "publicKey" and method == "GET":
            name = "/".join(segs[:10])
            with kms.lock:
                k, v = kms.version(name)
                if k["purpose"] not in ("ASYMMETRIC_SIGN", "ASYMMETRIC_DECRYPT", "KEY_ENCAPSULATION"):
                    raise ApiError("FAILED_PRECONDITION", f"Key {k['name']} has no public key.")
                if v["state"] != "ENABLED":
                    raise ApiError("FAILED_PRECONDITION",
                                   f"The request cannot be fulfilled. Resource {name} has value "
                                   f"{v['state']} in field crypto_key_version.state.")
                kind = algorithm_info(v["algorithm"])[1]
                if kind in pqc.KINDS:
                    return pqc.public_key_answer(v, kind, q, self.fail, crc, b64e)
                pem = v["material"].public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
                return {"pem": pem, "algorithm": v["algorithm"], "pemCrc32c": str(crc(pem.encode())),
                        "name": name, "protectionLevel": v["protectionLevel"]}
        raise ApiError("NOT_FOUND", f"The requested URL /v1/{path} was not found.")

    def crypto(self, verb, name, body):
        kms = self.server.kms
        with kms.lock:
            purpose = {"asymmetricSign": "ASYMMETRIC_SIGN", "asymmetricDecrypt": "ASYMMETRIC_DECRYPT",
                       "macSign": "MAC", "macVerify": "MAC", "rawEncrypt": "RAW_ENCRYPT_DECRYPT",
                       "rawDecrypt": "RAW_ENCRYPT_DECRYPT", "decapsulate": "KEY_ENCAPSULATION"}.get(verb)
            if purpose is None:
                raise ApiError("NOT_FOUND", f"Method {verb} not found.")
            v = kms.usable(name, purpose)
        _, kind, d = algorithm_info(v["algorithm"])
        key = v["material"]
        out = {"protectionLevel": v["protectionLevel"]}
        if verb == "asymmetricSign":
            out["name"] = name
            if kind in ("ed25519", "ml-dsa", "slh-dsa"):
                if body.get("digest"):
                    raise ApiError("INVALID_ARGUMENT", f"Algorithm {v['algorithm']} signs data, not a digest.")
                data = field_bytes(body, "data")
                put_verified(out, "verifiedDataCrc32c", checked(body, "data", data))
                sig = pqc.sign(kind, key, data) if kind != "ed25519" else key.sign(data)
            else:
                dig = body.get("digest") or {}
                want = d[1] if kind != "ec" else d[1]
                fields = [f for f in DIGEST_FIELDS if f in dig]
                if len(fields) != 1:
                    raise ApiError("INVALID_ARGUMENT", "Exactly one digest must be set.")
                f = fields[0]
                if DIGEST_FIELDS[f] is not want:
                    raise ApiError("INVALID_ARGUMENT",
                                   f"The digest type {f} does not match the algorithm {v['algorithm']}.")
                digest = field_bytes(dig, f)
                if len(digest) != want.digest_size:
                    raise ApiError("INVALID_ARGUMENT", f"Digest length must be {want.digest_size} bytes.")
                put_verified(out, "verifiedDigestCrc32c", checked(body, "digest", digest))
                pre = utils.Prehashed(want())
                if kind == "ec":
                    sig = key.sign(digest, ec.ECDSA(pre))
                elif kind == "rsa-pkcs1":
                    sig = key.sign(digest, padding.PKCS1v15(), pre)
                else:
                    sig = key.sign(digest, padding.PSS(mgf=padding.MGF1(want()),
                                                       salt_length=want.digest_size), pre)
            out["signature"] = b64e(sig)
            out["signatureCrc32c"] = str(crc(sig))
        elif verb == "decapsulate":
            ct = field_bytes(body, "ciphertext")
            put_verified(out, "verifiedCiphertextCrc32c", checked(body, "ciphertext", ct))
            secret = pqc.decapsulate(key, ct, self.fail)
            out.update({"name": name, "sharedSecret": b64e(secret), "sharedSecretCrc32c": str(crc(secret))})
        elif verb == "asymmetricDecrypt":
            ct = field_bytes(body, "ciphertext")
            put_verified(out, "verifiedCiphertextCrc32c", checked(body, "ciphertext", ct))
            h = d[1]
            try:
                pt = key.decrypt(ct, padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=None))
            except ValueError:
                raise ApiError("INVALID_ARGUMENT",
                               "Decryption failed: verify that 'name' refers to the correct CryptoKey.")
            if pt:
                out["plaintext"] = b64e(pt)
            out["plaintextCrc32c"] = str(crc(pt))
        elif verb in ("macSign", "macVerify"):
            out["name"] = name
            data = field_bytes(body, "data", required=False)
            put_verified(out, "verifiedDataCrc32c", checked(body, "data", data))
            h = hmac.HMAC(key, d())
            h.update(data)
            tag = h.finalize()
            if verb == "macSign":
                out["mac"] = b64e(tag)
                out["macCrc32c"] = str(crc(tag))
            else:
                mac = field_bytes(body, "mac")
                put_verified(out, "verifiedMacCrc32c", checked(body, "mac", mac))
                ok = secrets.compare_digest(mac, tag)
                put_verified(out, "success", ok)
                put_verified(out, "verifiedSuccessIntegrity", ok)
        elif verb == "rawEncrypt":
            if kind != "aes-gcm":
                raise ApiError("INVALID_ARGUMENT", f"rawEncrypt does not serve {v['algorithm']} here.")
            pt = field_bytes(body, "plaintext", required=False)
            aad = field_bytes(body, "additionalAuthenticatedData", required=False)
            if body.get("initializationVector"):
                raise ApiError("INVALID_ARGUMENT", "An initialization vector may not be supplied for AES-GCM.")
            if len(pt) > RAW_MAX or len(aad) > RAW_MAX:
                raise ApiError("INVALID_ARGUMENT", "The plaintext and AAD must each be at most 64KiB.")
            if v["protectionLevel"] == "HSM" and len(pt) + len(aad) > RAW_HSM_MAX:
                raise ApiError("INVALID_ARGUMENT",
                               "For HSM keys the plaintext and AAD together must be at most 8192 bytes.")
            put_verified(out, "verifiedPlaintextCrc32c", checked(body, "plaintext", pt))
            put_verified(out, "verifiedAdditionalAuthenticatedDataCrc32c",
                         checked(body, "additionalAuthenticatedData", aad))
            iv = os.urandom(12)
            ct = AESGCM(key).encrypt(iv, pt, aad or None)
            out.update({"name": name, "ciphertext": b64e(ct), "initializationVector": b64e(iv),
                        "tagLength": 16, "ciphertextCrc32c": str(crc(ct)),
                        "initializationVectorCrc32c": str(crc(iv))})
        elif verb == "rawDecrypt":
            if kind != "aes-gcm":
                raise ApiError("INVALID_ARGUMENT", f"rawDecrypt does not serve {v['algorithm']} here.")
            ct = field_bytes(body, "ciphertext")
            iv = field_bytes(body, "initializationVector")
            aad = field_bytes(body, "additionalAuthenticatedData", required=False)
            tag_len = int(body.get("tagLength") or 16)
            put_verified(out, "verifiedCiphertextCrc32c", checked(body, "ciphertext", ct))
            put_verified(out, "verifiedInitializationVectorCrc32c",
                         checked(body, "initializationVector", iv))
            put_verified(out, "verifiedAdditionalAuthenticatedDataCrc32c",
                         checked(body, "additionalAuthenticatedData", aad))
            if tag_len != 16 or len(iv) != 12:
                raise ApiError("INVALID_ARGUMENT", "AES-GCM takes a 12-byte IV and a 16-byte tag here.")
            try:
                pt = AESGCM(key).decrypt(iv, ct, aad or None)
            except InvalidTag:
                raise ApiError("INVALID_ARGUMENT", "Decryption failed.")
            if pt:
                out["plaintext"] = b64e(pt)
            out["plaintextCrc32c"] = str(crc(pt))
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sa-out", required=True)
    ap.add_argument("--rogue-sa-out")
    ap.add_argument("--seed")
    ap.add_argument("--expires-in", type=int, default=3600)
    a = ap.parse_args()

    kms = Kms(a.expires_in)
    if a.seed:
        with open(a.seed) as f:
            seed = json.load(f)
        for k in seed.get("keys", []):
            ring, _, key_id = k["name"].partition("/cryptoKeys/")
            kms.rings.setdefault(ring, now_rfc3339())
            alg = k["algorithm"]
            kms.create_key(ring, key_id, algorithm_info(alg)[0], alg,
                           k.get("protectionLevel", "HSM"), k.get("versions", 1))
            for n in k.get("disabled", []):
                kms.version(f"{k['name']}/cryptoKeyVersions/{n}")[1]["state"] = "DISABLED"
        for ring in seed.get("keyRings", []):
            kms.rings.setdefault(ring, now_rfc3339())

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.kms = kms
    token_uri = f"http://127.0.0.1:{a.port}/token"

    def write_sa(path, email):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
        sa = {"type": "service_account", "project_id": "p", "private_key_id": secrets.token_hex(20),
              "private_key": pem, "client_email": email, "client_id": "1",
              "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(sa, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return k.public_key()

    server.sa_email = "hsmux-test@p.iam.gserviceaccount.com"
    server.token_uri = token_uri
    server.sa_public = write_sa(a.sa_out, server.sa_email)
    if a.rogue_sa_out:
        # same account name, a key the server does not know
        write_sa(a.rogue_sa_out, server.sa_email)
    print(f"gcpkms_server listening on 127.0.0.1:{a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
