#!/usr/bin/env python3
"""A stand-in for Azure Key Vault / Azure Managed HSM (keys, REST API 7.5), Microsoft Entra
ID's token endpoint and the Azure Instance Metadata Service, for the tests of hsmux's
azure-kv backend.

What it follows from the published references:
- Key Vault keys: `POST /keys/{name}/create`, `POST /keys/{name}/rotate`, `GET /keys`,
  `GET /keys/{name}/versions` (paged: `value` + absolute `nextLink`, `maxresults`),
  `GET /keys/{name}[/{version}]`, `PATCH /keys/{name}/{version}` (attributes),
  `POST /keys/{name}/{version}/{sign,verify,encrypt,decrypt,wrapkey,unwrapkey}`,
  `POST /keys/{name}/backup`, `POST /keys/restore`; every call takes `api-version`;
- JSON Web Keys: `kid` = `{vault}/keys/{name}/{version}`, `kty` (EC, EC-HSM, RSA, RSA-HSM,
  oct-HSM), `key_ops`, `n`/`e`, `crv`/`x`/`y`, all binary as base64url without padding;
  `attributes` {enabled, nbf, exp, created, updated, recoveryLevel} as Unix seconds;
- algorithms: RS256/384/512, PS256/384/512 (salt = hash length), ES256/384/512 (signature
  raw r||s; `value` is the digest, whose length must match), RSA-OAEP, RSA-OAEP-256,
  RSA1_5, and on Managed HSM oct-HSM keys A128/192/256GCM (the HSM chooses the 12-byte
  IV; encrypt answers `value`, `iv`, `tag`), A*CBCPAD, A*KW;
- errors: `{"error": {"code", "message"[, "innererror"]}}` (KeyNotFound 404, BadParameter
  400, Forbidden 403 with innererror KeyDisabled/ForbiddenByPolicy, Unauthorized 401,
  Throttled 429 with Retry-After, ServiceUnavailable 503);
- a request without a valid bearer token gets 401 and the challenge
  `WWW-Authenticate: Bearer authorization="{authority}/{tenant}", resource="{resource}"`,
  resource https://vault.azure.net or https://managedhsm.azure.net (--kind);
- Entra ID: `POST /{tenant}/oauth2/v2.0/token`, grant_type=client_credentials, scope
  `{resource}/.default`, with client_secret, or a client_assertion JWT (RS256) that is
  either a certificate credential (x5t / x5t#S256 = the registered certificate's
  thumbprint, aud = this token URL, iss = sub = client id, exp/nbf) or a workload
  identity's federated token (signed by the cluster issuer this server plays, aud
  api://AzureADTokenExchange); errors as {"error","error_description","error_codes"};
- IMDS (plain HTTP as on 169.254.169.254): `GET /metadata/identity/oauth2/token?
  api-version=2018-02-01&resource=...[&client_id=...]` with `Metadata: true`; expires_in
  as a string;
- the vault and the token endpoint are served over HTTPS with a certificate from a CA
  this server makes (ca.pem in --dir); IMDS and the test controls over plain HTTP.
  (The identity side and the CA are in azurekv_identity.py.)

Test controls (not Azure's), on the plain port under /__control/:
  POST fault  {"kind", "count", "match", "delay_ms", "retry_after"}: the next `count` vault
              calls whose path contains `match` get: throttle (429 + Retry-After),
              unavailable (503), hang (answer after delay_ms), bad_json, bad_b64,
              wrong_length, unauthorized (401 challenge whatever the token)
  POST clear  drop pending faults
  POST token  {"expires_in"}: lifetime of tokens granted from now on
  POST revoke forget every token granted so far
  POST attrs  {"name", "version", "enabled", "exp", "nbf"}: set a version's attributes
  POST delete {"name"}; POST deny {"name"}: 403 on everything under that key
  POST material {"kid"}: an oct key's bytes (base64), to check ciphertexts independently
  POST backup {"name"} -> {"value"}; POST restore {"value"}: as the REST calls, unauthenticated
  GET  stats  {"token_grants", "imds_grants", "calls": {op: n}, "last_scope"}

Usage: azurekv_server.py --port P --imds-port Q --dir D [--kind keyvault|managedhsm]
       [--seed FILE] [--tenant T] [--client-id C] [--secret S] [--expires-in N]
The seed file: {"keys": [{"name", "kty", "size"|"crv", "versions", "disabled": [i],
"ops": [...]}]}; versions are numbered from 1 (oldest) in the seed only.
"""

import argparse
import base64
import json
import os
import secrets
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import ThreadingHTTPServer

from azurekv_identity import Identity, make_ca
from fakeserver_common import FaultList, JsonHandler
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, keywrap, padding as sympad, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s):
    if not isinstance(s, str):
        raise ApiError(400, "BadParameter", "a base64url string was expected")
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except Exception:
        raise ApiError(400, "BadParameter", "the value is not base64url")


def int_bytes(i, n=None):
    n = n or (i.bit_length() + 7) // 8
    return i.to_bytes(n, "big")


class ApiError(Exception):
    def __init__(self, status, code, message, inner=None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner
        self.headers = headers or {}

    def body(self):
        e = {"code": self.code, "message": self.message}
        if self.inner:
            e["innererror"] = {"code": self.inner}
        return {"error": e}


HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
CURVES = {"P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48), "P-521": (ec.SECP521R1, 66)}
ES_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
RSA_OPS = ["sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey"]
OCT_OPS = ["encrypt", "decrypt", "wrapKey", "unwrapKey"]


def now():
    return int(time.time())


_last_created = [0]


def created_stamp():
    """Creation times in seconds, strictly increasing here so that versions made within one
    second still have an order (the service's clock does the same in practice)."""
    _last_created[0] = max(now(), _last_created[0] + 1)
    return _last_created[0]


class Version:
    def __init__(self, name, kty, size, crv, ops):
        self.name, self.kty, self.crv = name, kty, crv
        self.id = secrets.token_hex(16)
        base = kty.replace("-HSM", "")
        if base == "RSA":
            self.key = rsa.generate_private_key(65537, size or 2048)
        elif base == "EC":
            self.key = ec.generate_private_key(CURVES[crv][0]())
        elif kty == "oct-HSM":
            self.key = os.urandom((size or 256) // 8)
        else:
            raise ApiError(400, "BadParameter", f"kty {kty} is not supported")
        self.ops = ops or (OCT_OPS if base == "oct" else
                           ["sign", "verify"] if base == "EC" else RSA_OPS)
        t = created_stamp()
        self.attrs = {"enabled": True, "created": t, "updated": t,
                      "recoveryLevel": "Recoverable+Purgeable", "exportable": False}

    def jwk(self, vault):
        k = {"kid": f"{vault}/keys/{self.name}/{self.id}", "kty": self.kty, "key_ops": self.ops}
        if self.kty.startswith("RSA"):
            pub = self.key.public_key().public_numbers()
            k.update(n=b64u(int_bytes(pub.n)), e=b64u(int_bytes(pub.e)))
        elif self.kty.startswith("EC"):
            pub = self.key.public_key().public_numbers()
            n = CURVES[self.crv][1]
            k.update(crv=self.crv, x=b64u(int_bytes(pub.x, n)), y=b64u(int_bytes(pub.y, n)))
        return k

    def usable(self, op):
        a = self.attrs
        if not a["enabled"]:
            raise ApiError(403, "Forbidden", f"Operation {op} is not allowed on a disabled key.",
                           "KeyDisabled")
        if a.get("nbf") and a["nbf"] > now() or a.get("exp") and a["exp"] < now():
            raise ApiError(403, "Forbidden", f"Operation {op} is not allowed on an expired or not yet valid key.",
                           "KeyExpired")
        if op not in self.ops:
            raise ApiError(403, "Forbidden", f"Operation {op} is not permitted on this key.",
                           "ForbiddenByPolicy")


class Vault:
    def __init__(self, kind, expires_in):
        self.kind = kind
        self.resource = ("https://managedhsm.azure.net" if kind == "managedhsm"
                         else "https://vault.azure.net")
        self.keys = {}  # name -> [Version] oldest first
        self.tokens = {}  # token -> (expiry, resource)
        self.expires_in = expires_in
        self.faults = FaultList()
        self.denied = set()
        self.stats = {"token_grants": 0, "imds_grants": 0, "calls": {}, "last_scope": None}
        self.lock = threading.Lock()

    def create(self, name, body):
        kty = body.get("kty")
        if kty not in ("EC", "EC-HSM", "RSA", "RSA-HSM", "oct-HSM"):
            raise ApiError(400, "BadParameter", f"Invalid kty {kty!r}")
        if kty == "oct-HSM" and self.kind != "managedhsm":
            raise ApiError(400, "BadParameter", "oct-HSM keys are only supported by Managed HSM")
        if self.kind == "managedhsm" and not kty.endswith("-HSM"):
            raise ApiError(400, "BadParameter", "Managed HSM only takes HSM key types")
        crv = body.get("crv") or ("P-256" if kty.startswith("EC") else None)
        if crv and crv not in CURVES:
            raise ApiError(400, "BadParameter", f"Invalid curve {crv!r}")
        size = body.get("key_size")
        if kty.startswith("RSA") and size not in (None, 2048, 3072, 4096):
            raise ApiError(400, "BadParameter", f"Invalid key_size {size}")
        if kty == "oct-HSM" and size not in (None, 128, 192, 256):
            raise ApiError(400, "BadParameter", f"Invalid key_size {size}")
        v = Version(name, kty, size, crv, body.get("key_ops"))
        if "attributes" in body:
            v.attrs.update({k: body["attributes"][k] for k in ("enabled", "nbf", "exp")
                            if k in body["attributes"]})
        self.keys.setdefault(name, []).append(v)
        return v

    def version(self, name, vid):
        if name in self.denied:
            raise ApiError(403, "Forbidden", f"The user does not have keys permission on key {name}",
                           "ForbiddenByRbac")
        vs = self.keys.get(name)
        if not vs:
            raise ApiError(404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault.")
        if not vid:
            return vs[-1]
        for v in vs:
            if v.id == vid:
                return v
        raise ApiError(404, "KeyNotFound", f"A key with (name/id) {name}/{vid} was not found in this key vault.")

    def bundle(self, v, base):
        return {"key": v.jwk(base), "attributes": v.attrs}

    def backup(self, name):
        vs = self.keys.get(name)
        if not vs:
            raise ApiError(404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault.")
        out = []
        for v in vs:
            if isinstance(v.key, bytes):
                mat = v.key
            else:
                mat = v.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
            out.append({"id": v.id, "kty": v.kty, "crv": v.crv, "ops": v.ops, "attrs": v.attrs,
                        "key": b64u(mat)})
        return b64u(json.dumps({"name": name, "versions": out}).encode())

    def restore(self, blob):
        try:
            d = json.loads(unb64u(blob))
        except ApiError:
            raise
        except Exception:
            raise ApiError(400, "BadParameter", "Backup blob could not be decoded")
        if d["name"] in self.keys:
            raise ApiError(409, "Conflict", f"Key {d['name']} already exists")
        vs = []
        for o in d["versions"]:
            v = Version.__new__(Version)
            v.name, v.kty, v.crv, v.id, v.ops, v.attrs = d["name"], o["kty"], o["crv"], o["id"], o["ops"], o["attrs"]
            mat = unb64u(o["key"])
            v.key = mat if o["kty"] == "oct-HSM" else serialization.load_der_private_key(mat, None)
            vs.append(v)
        self.keys[d["name"]] = vs
        return vs[-1]


def sign(v, alg, digest):
    family, bits = alg[:2], alg[2:]
    if bits not in HASHES or family not in ("RS", "PS", "ES"):
        raise ApiError(400, "BadParameter", f"Invalid algorithm {alg}")
    h = HASHES[bits]()
    if len(digest) != h.digest_size:
        raise ApiError(400, "BadParameter", "Invalid digest length for the algorithm")
    pre = utils.Prehashed(h)
    if family == "ES":
        if not v.kty.startswith("EC") or v.crv != ES_CURVE[alg]:
            raise ApiError(400, "BadParameter", f"Algorithm {alg} does not match key curve {v.crv}")
        r, s = utils.decode_dss_signature(v.key.sign(digest, ec.ECDSA(pre)))
        n = CURVES[v.crv][1]
        return int_bytes(r, n) + int_bytes(s, n)
    if not v.kty.startswith("RSA"):
        raise ApiError(400, "BadParameter", f"Algorithm {alg} is not valid for a {v.kty} key")
    pad = (padding.PKCS1v15() if family == "RS"
           else padding.PSS(padding.MGF1(HASHES[bits]()), h.digest_size))
    return v.key.sign(digest, pad, pre)


def verify(v, alg, digest, sig):
    family, bits = alg[:2], alg[2:]
    pre = utils.Prehashed(HASHES[bits]())
    try:
        if family == "ES":
            n = CURVES[v.crv][1]
            der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
            v.key.public_key().verify(der, digest, ec.ECDSA(pre))
        else:
            pad = (padding.PKCS1v15() if family == "RS"
                   else padding.PSS(padding.MGF1(HASHES[bits]()), HASHES[bits]().digest_size))
            v.key.public_key().verify(sig, digest, pad, pre)
        return True
    except (InvalidSignature, ValueError):
        return False


def rsa_pad(alg):
    if alg == "RSA-OAEP":
        return padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    if alg == "RSA-OAEP-256":
        return padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    if alg == "RSA1_5":
        return padding.PKCS1v15()
    raise ApiError(400, "BadParameter", f"Invalid algorithm {alg} for an RSA key")


def aes_bits(v, alg):
    if v.kty != "oct-HSM":
        raise ApiError(400, "BadParameter", f"Algorithm {alg} needs an oct-HSM key")
    if int(alg[1:4]) != len(v.key) * 8:
        raise ApiError(400, "BadParameter", f"Algorithm {alg} does not match the key size")


def cipher(v, op, body):
    alg = body.get("alg", "")
    value = unb64u(body.get("value"))
    if v.kty.startswith("RSA"):
        pad = rsa_pad(alg)
        if op in ("encrypt", "wrapKey"):
            return {"value": b64u(v.key.public_key().encrypt(value, pad))}
        try:
            return {"value": b64u(v.key.decrypt(value, pad))}
        except ValueError:
            raise ApiError(400, "BadParameter", "Decryption failed")
    if v.kty.startswith("EC"):
        raise ApiError(400, "BadParameter", f"Operation {op} is not supported on EC keys")
    aes_bits(v, alg)
    if alg.endswith("GCM") and op in ("encrypt", "decrypt"):
        aad = unb64u(body["aad"]) if body.get("aad") else None
        if op == "encrypt":
            if body.get("iv"):
                raise ApiError(400, "BadParameter", "The IV of AES-GCM is chosen by the HSM")
            iv = os.urandom(12)
            ct = AESGCM(v.key).encrypt(iv, value, aad)
            out = {"value": b64u(ct[:-16]), "iv": b64u(iv), "tag": b64u(ct[-16:])}
            if aad:
                out["aad"] = b64u(aad)
            return out
        iv, tag = unb64u(body.get("iv", "")), unb64u(body.get("tag", ""))
        if len(iv) != 12 or len(tag) != 16:
            raise ApiError(400, "BadParameter", "AES-GCM decryption needs a 12-byte iv and a 16-byte tag")
        try:
            return {"value": b64u(AESGCM(v.key).decrypt(iv, value + tag, aad))}
        except InvalidTag:
            raise ApiError(400, "BadParameter", "Decryption failed: the tag does not match")
    if alg.endswith("CBCPAD") and op in ("encrypt", "decrypt"):
        iv = unb64u(body.get("iv", ""))
        if len(iv) != 16:
            raise ApiError(400, "BadParameter", "AES-CBC needs a 16-byte iv")
        c = Cipher(algorithms.AES(v.key), modes.CBC(iv))
        if op == "encrypt":
            p = sympad.PKCS7(128).padder()
            e = c.encryptor()
            return {"value": b64u(e.update(p.update(value) + p.finalize()) + e.finalize()), "iv": b64u(iv)}
        try:
            d = c.decryptor()
            u = sympad.PKCS7(128).unpadder()
            return {"value": b64u(u.update(d.update(value) + d.finalize()) + u.finalize())}
        except ValueError:
            raise ApiError(400, "BadParameter", "Decryption failed: bad padding")
    if alg.endswith("KW") and op in ("wrapKey", "unwrapKey"):
        if op == "wrapKey":
            return {"value": b64u(keywrap.aes_key_wrap(v.key, value))}
        try:
            return {"value": b64u(keywrap.aes_key_unwrap(v.key, value))}
        except keywrap.InvalidUnwrap:
            raise ApiError(400, "BadParameter", "Unwrap failed: integrity check")
    raise ApiError(400, "BadParameter", f"Algorithm {alg} is not valid for {op}")


# ---------------------------------------------------------------- HTTP

class Handler(JsonHandler):
    def dispatch(self, method):
        srv = self.server
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        raw = self.read_body()
        try:
            if srv.plain:
                if u.path.startswith("/__control/"):
                    return self.reply(200, self.control(u.path[len("/__control/"):], raw))
                if u.path == "/metadata/identity/oauth2/token" and method == "GET":
                    return self.imds(q)
                raise ApiError(404, "NotFound", "no such path")
            if u.path.endswith("/oauth2/v2.0/token") and method == "POST":
                return self.token(u.path, raw)
            self.vault_call(method, u.path, q, raw)
        except ApiError as e:
            self.reply(e.status, e.body(), e.headers)

    # ---- identity

    def token(self, path, raw):
        srv, ident = self.server, self.server.identity
        f = dict(urllib.parse.parse_qsl(raw.decode()))
        token_url = f"{srv.base}{path}"

        def refuse(code, err, desc):
            self.reply(code, {"error": err, "error_description": desc, "error_codes": [int(desc[5:12]) if desc[5:12].isdigit() else 0]})

        if path != f"/{ident.tenant}/oauth2/v2.0/token":
            return refuse(400, "invalid_request", "AADSTS90002: Tenant not found")
        if f.get("grant_type") != "client_credentials":
            return refuse(400, "unsupported_grant_type", "AADSTS70003: grant_type must be client_credentials")
        if f.get("client_id") != ident.client_id:
            return refuse(400, "unauthorized_client", "AADSTS700016: Application not found in the directory")
        scope = f.get("scope", "")
        if scope != srv.vault.resource + "/.default":
            return refuse(400, "invalid_scope", f"AADSTS70011: The provided scope {scope!r} is not valid")
        if "client_secret" in f:
            if not secrets.compare_digest(f["client_secret"], ident.secret):
                return refuse(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        elif f.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            why = ident.check_assertion(f.get("client_assertion", ""), token_url)
            if why:
                return refuse(401, "invalid_client", why)
        else:
            return refuse(400, "invalid_request", "AADSTS7000218: client_assertion or client_secret is required")
        with srv.vault.lock:
            srv.vault.stats["token_grants"] += 1
            srv.vault.stats["last_scope"] = scope
        self.reply(200, self.grant(srv.vault.resource))

    def grant(self, resource):
        v = self.server.vault
        tok = secrets.token_urlsafe(32)
        with v.lock:
            v.tokens[tok] = (time.time() + v.expires_in, resource)
        return {"token_type": "Bearer", "expires_in": v.expires_in, "ext_expires_in": v.expires_in,
                "access_token": tok}

    def imds(self, q):
        v = self.server.vault
        if self.headers.get("Metadata") != "true":
            raise ApiError(400, "invalid_request", "Required metadata header not specified")
        if q.get("api-version") != "2018-02-01":
            raise ApiError(400, "invalid_request", "Invalid api-version")
        if q.get("resource") not in (v.resource, v.resource + "/"):
            raise ApiError(400, "invalid_resource", "AADSTS500011: resource principal not found")
        if q.get("client_id") not in (None, self.server.mi_client_id):
            raise ApiError(400, "invalid_request", "Identity not found")
        g = self.grant(v.resource)
        with v.lock:
            v.stats["imds_grants"] += 1
        self.reply(200, {"access_token": g["access_token"], "expires_in": str(v.expires_in),
                         "expires_on": str(now() + v.expires_in), "resource": v.resource,
                         "token_type": "Bearer"})

    def challenge(self, why):
        srv = self.server
        h = {"WWW-Authenticate": f'Bearer authorization="{srv.base}/{srv.identity.tenant}", '
                                f'resource="{srv.vault.resource}"'}
        raise ApiError(401, "Unauthorized", why, headers=h)

    def authenticate(self):
        a = self.headers.get("Authorization", "")
        if not a.startswith("Bearer "):
            self.challenge("AKV10000: Request is missing a Bearer or PoP token.")
        v = self.server.vault
        with v.lock:
            t = v.tokens.get(a[7:])
        if t is None or t[0] < time.time():
            self.challenge("AKV10032: Invalid issuer or expired token.")
        if t[1] != v.resource:
            self.challenge("AKV10022: Invalid audience.")

    # ---- controls

    def control(self, what, raw):
        v = self.server.vault
        b = json.loads(raw) if raw else {}
        with v.lock:
            if what == "fault":
                v.faults.add(b)
            elif what == "clear":
                v.faults.clear()
            elif what == "token":
                v.expires_in = b["expires_in"]
            elif what == "revoke":
                v.tokens.clear()
            elif what == "stats":
                return v.stats
            elif what == "attrs":
                ver = v.version(b["name"], b.get("version"))
                ver.attrs.update({k: b[k] for k in ("enabled", "exp", "nbf") if k in b})
            elif what == "delete":
                v.keys.pop(b["name"], None)
            elif what == "deny":
                v.denied.add(b["name"])
            elif what == "material":
                name, vid = b["kid"].split("/keys/")[1].split("/")
                return {"key": base64.b64encode(v.version(name, vid).key).decode()}
            elif what == "backup":
                return {"value": v.backup(b["name"])}
            elif what == "restore":
                v.restore(b["value"])
            else:
                raise ApiError(404, "NotFound", what)
        return {}

    def take_fault(self, path):
        v = self.server.vault
        with v.lock:
            return v.faults.take(path)

    # ---- the vault

    def vault_call(self, method, path, q, raw):
        v, base = self.server.vault, self.server.base
        if not q.get("api-version", "").startswith("7."):
            raise ApiError(400, "BadParameter", "The api-version query parameter is required (7.x)")
        fault = self.take_fault(path)
        kind = fault and fault.get("kind")
        if kind == "unauthorized":
            self.challenge("AKV10032: Invalid issuer or expired token.")
        self.authenticate()
        if kind == "throttle":
            raise ApiError(429, "Throttled", "Request was not processed because too many requests were received.",
                           headers={"Retry-After": str(fault.get("retry_after", 1))})
        if kind == "unavailable":
            raise ApiError(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        if kind == "hang":
            time.sleep(fault.get("delay_ms", 5000) / 1000)
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(400, "BadParameter", "The request body is not JSON")
        with v.lock:
            out, op = self.route(method, parts, q, body)
            v.stats["calls"][op] = v.stats["calls"].get(op, 0) + 1
        if kind == "bad_json":
            return self.reply(200, None, raw=b'{"kid": "x", "value": ')
        if kind == "bad_b64" and "value" in out:
            out["value"] = "***not base64url***"
        if kind == "wrong_length" and "value" in out:
            out["value"] = b64u(unb64u(out["value"])[:-1])
        self.reply(200, out)

    def route(self, method, parts, q, body):
        v, base = self.server.vault, self.server.base
        if parts[0] != "keys":
            raise ApiError(404, "NotFound", "no such path")
        if method == "GET" and len(parts) == 1:
            items = [{"kid": f"{base}/keys/{n}", "attributes": vs[-1].attrs}
                     for n, vs in sorted(v.keys.items())]
            return self.page(items, q, "/keys"), "list"
        if method == "POST" and parts[1:] == ["restore"]:
            ver = v.restore(body.get("value", ""))
            return v.bundle(ver, base), "restore"
        name = parts[1]
        rest = parts[2:]
        if method == "GET" and rest == ["versions"]:
            v.version(name, None)
            items = [{"kid": f"{base}/keys/{name}/{x.id}", "attributes": x.attrs}
                     for x in v.keys[name]]
            return self.page(items, q, f"/keys/{name}/versions"), "versions"
        if method == "GET" and len(rest) <= 1:
            return v.bundle(v.version(name, rest[0] if rest else None), base), "get"
        if method == "PATCH" and len(rest) == 1:
            ver = v.version(name, rest[0])
            ver.attrs.update({k: body.get("attributes", {})[k] for k in ("enabled", "nbf", "exp")
                              if k in body.get("attributes", {})})
            ver.attrs["updated"] = now()
            return v.bundle(ver, base), "update"
        if method == "POST" and rest == ["create"]:
            if name in v.denied:
                raise ApiError(403, "Forbidden", "The user does not have keys create permission", "ForbiddenByRbac")
            return v.bundle(v.create(name, body), base), "create"
        if method == "POST" and rest == ["rotate"]:
            cur = v.version(name, None)
            n = Version(name, cur.kty, (cur.key.key_size if hasattr(cur.key, "key_size") else
                                        len(cur.key) * 8 if isinstance(cur.key, bytes) else None),
                        cur.crv, cur.ops)
            v.keys[name].append(n)
            return v.bundle(n, base), "rotate"
        if method == "POST" and rest == ["backup"]:
            return {"value": v.backup(name)}, "backup"
        if method == "POST" and len(rest) == 2:
            op = {"sign": "sign", "verify": "verify", "encrypt": "encrypt", "decrypt": "decrypt",
                  "wrapkey": "wrapKey", "unwrapkey": "unwrapKey"}.get(rest[1])
            if op is None:
                raise ApiError(404, "NotFound", "no such operation")
            ver = v.version(name, rest[0])
            ver.usable(op)
            kid = f"{base}/keys/{name}/{ver.id}"
            if op == "sign":
                return {"kid": kid, "value": b64u(sign(ver, body.get("alg", ""), unb64u(body.get("value"))))}, op
            if op == "verify":
                ok = verify(ver, body.get("alg", ""), unb64u(body.get("digest")), unb64u(body.get("value")))
                return {"value": ok}, op
            return dict(cipher(ver, op, body), kid=kid), op
        raise ApiError(405, "BadParameter", "method not allowed here")

    def page(self, items, q, path):
        size = min(int(q.get("maxresults", 25)), 25)
        start = int(q.get("$skiptoken", 0))
        out = {"value": items[start:start + size], "nextLink": None}
        if start + size < len(items):
            out["nextLink"] = (f"{self.server.base}{path}?api-version=7.5&maxresults={size}"
                               f"&$skiptoken={start + size}")
        return out


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that refuses the certificate (the no-CA test) or hangs up: not an error
        # of the server's, and no traceback on the test's stderr.
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--imds-port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--kind", choices=["keyvault", "managedhsm"], default="keyvault")
    ap.add_argument("--seed")
    ap.add_argument("--tenant", default="00000000-0000-0000-0000-0000000000aa")
    ap.add_argument("--client-id", default="11111111-1111-1111-1111-1111111111bb")
    ap.add_argument("--secret", default="test-client-secret")
    ap.add_argument("--mi-client-id", default="22222222-2222-2222-2222-2222222222cc")
    ap.add_argument("--expires-in", type=int, default=3600)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)

    vault = Vault(a.kind, a.expires_in)
    if a.seed:
        with open(a.seed) as f:
            for k in json.load(f).get("keys", []):
                body = {"kty": k["kty"], "key_size": k.get("size"), "crv": k.get("crv"),
                        "key_ops": k.get("ops")}
                for i in range(1, k.get("versions", 1) + 1):
                    ver = vault.create(k["name"], body)
                    if i in k.get("disabled", []):
                        ver.attrs["enabled"] = False

    make_ca(a.dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(a.dir, "server.pem"))
    base = f"https://127.0.0.1:{a.port}"
    identity = Identity(a.dir, a.tenant, a.client_id, a.secret, base)

    servers = []
    for port, plain in ((a.port, False), (a.imds_port, True)):
        s = Server(("127.0.0.1", port), Handler)
        s.plain, s.vault, s.identity, s.base = plain, vault, identity, base
        s.mi_client_id = a.mi_client_id
        if not plain:
            # the handshake in the handler's thread, not in accept()
            s.socket = ctx.wrap_socket(s.socket, server_side=True, do_handshake_on_connect=False)
        servers.append(s)
    threading.Thread(target=servers[0].serve_forever, daemon=True).start()
    with open(os.path.join(a.dir, "ready"), "w") as f:
        f.write(base)
    print(f"azurekv_server ({a.kind}) on {base}, IMDS and controls on 127.0.0.1:{a.imds_port}", flush=True)
    servers[1].serve_forever()


if __name__ == "__main__":
    sys.exit(main())
