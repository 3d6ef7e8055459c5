"""The identity side of azurekv_server.py: Microsoft Entra ID's app registration (client
secret, a client certificate, a workload-identity issuer whose federated tokens it trusts)
and the check of a client assertion, as the token endpoint does it; and the test CA with
the server certificate the vault is served with. Files are written mode 0600.
"""

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import time

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u_raw(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def now():
    return int(time.time())


def jwt_parts(tok):
    try:
        h, c, s = tok.split(".")
        return json.loads(unb64u_raw(h)), json.loads(unb64u_raw(c)), (h + "." + c).encode(), unb64u_raw(s)
    except Exception:
        return None


class Identity:
    """The app registration and the workload-identity issuer the token endpoint knows."""

    def __init__(self, d, tenant, client_id, secret, authority):
        self.tenant, self.client_id, self.secret, self.authority = tenant, client_id, secret, authority
        self.cert, self.cert_key = self.client_cert(os.path.join(d, "client.pem"))
        self.client_cert(os.path.join(d, "rogue.pem"))
        self.issuer_key = rsa.generate_private_key(65537, 2048)
        self.write_federated(os.path.join(d, "federated.jwt"), self.issuer_key)
        self.write_federated(os.path.join(d, "federated-rogue.jwt"), rsa.generate_private_key(65537, 2048))

    def client_cert(self, path):
        k = rsa.generate_private_key(65537, 2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsmux-test-app")])
        t = datetime.datetime.now(datetime.timezone.utc)
        c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(t - datetime.timedelta(days=1))
             .not_valid_after(t + datetime.timedelta(days=30)).sign(k, hashes.SHA256()))
        pem = c.public_bytes(serialization.Encoding.PEM) + k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        write_private(path, pem)
        return c, k

    def write_federated(self, path, key):
        h = b64u(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k8s"}).encode())
        c = b64u(json.dumps({"iss": "https://oidc.test.local", "sub": "system:serviceaccount:ns:hsmux",
                             "aud": ["api://AzureADTokenExchange"], "exp": now() + 86400,
                             "iat": now()}).encode())
        s = key.sign(f"{h}.{c}".encode(), padding.PKCS1v15(), hashes.SHA256())
        write_private(path, f"{h}.{c}.{b64u(s)}\n".encode())

    def check_assertion(self, tok, token_url):
        """None when the assertion is good, else why not."""
        p = jwt_parts(tok)
        if p is None:
            return "AADSTS50027: JWT token is invalid or malformed"
        head, claims, signed, sig = p
        if head.get("alg") != "RS256":
            return "AADSTS5002730: the assertion's alg is not RS256"
        if claims.get("iss") == "https://oidc.test.local":
            key = self.issuer_key.public_key()
            if "api://AzureADTokenExchange" not in (claims.get("aud") or []):
                return "AADSTS700212: no matching federated identity record for the audience"
        else:
            der = self.cert.public_bytes(serialization.Encoding.DER)
            x5t = head.get("x5t") == b64u(hashlib.sha1(der).digest()) or \
                head.get("x5t#S256") == b64u(hashlib.sha256(der).digest())
            if not x5t:
                return "AADSTS700027: the certificate with the assertion's thumbprint is not registered"
            if claims.get("aud") != token_url:
                return f"AADSTS700027: aud {claims.get('aud')!r} is not {token_url!r}"
            if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
                return "AADSTS700027: iss and sub must be the client id"
            if not claims.get("jti"):
                return "AADSTS700027: no jti"
            if claims.get("nbf", 0) > now() + 300:
                return "AADSTS700027: the assertion is not yet valid"
            key = self.cert.public_key()
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now():
            return "AADSTS700024: the client assertion has expired"
        try:
            key.verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "AADSTS7000274: the client assertion's signature is invalid"
        return None


def write_private(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def make_ca(d):
    """A CA and a server certificate for 127.0.0.1/localhost; ca.pem for the client."""
    t = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsmux test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(t - datetime.timedelta(days=1)).not_valid_after(t + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(t - datetime.timedelta(days=1)).not_valid_after(t + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(ca_key, hashes.SHA256()))
    write_private(os.path.join(d, "server.pem"), cert.public_bytes(serialization.Encoding.PEM) +
                  key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    write_private(os.path.join(d, "ca.pem"), ca.public_bytes(serialization.Encoding.PEM))


