"""The device's key and token operations: the factory P-256 key pair, loading the private key, the ES256
registration token, and an enrollment-group member's derived key. The same files, claims and encodings as the Node
sample (sample-device/jwt.ts, commands/keygen.ts), so one key file and one fixed time give the same token header and
claims, byte for byte, in either language (the ECDSA signature itself is randomised in both)."""
import base64
import errno
import hashlib
import hmac
import json
import os
import re
import time
import uuid

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .errors import SampleDeviceError, usage_error

TOKEN_ALGORITHM = "ES256"
DEFAULT_LIFETIME_SECONDS = 300
# The Python sample signed tokens for 10 days; nothing longer makes sense for a registration token.
MAX_LIFETIME_SECONDS = 10 * 24 * 3600

# DPS registration ids (dps-protocol §3): 1-128 of alphanumerics and - . _ :, ending in an alphanumeric or -.
REGISTRATION_ID = re.compile(r"^[A-Za-z0-9\-._:]{0,127}[A-Za-z0-9-]$")
# A plain file name: no separators, no leading dot, so --name can never write outside --out-dir.
KEY_NAME = re.compile(r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$")
# A jti the caller fixes (for byte-comparable vectors): printable ASCII without quotes or backslashes.
JTI = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def assert_registration_id(value, flag="--registration-id"):
    if not REGISTRATION_ID.fullmatch(value):
        raise usage_error(flag, "must be 1-128 characters of letters, digits, - . _ : and end in a letter, digit or -")


def assert_lifetime(value, flag="--lifetime"):
    if not isinstance(value, int) or value < 1 or value > MAX_LIFETIME_SECONDS:
        raise usage_error(flag, "must be a whole number of seconds from 1 to %d" % MAX_LIFETIME_SECONDS)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact_json(value):
    """JSON as JavaScript's JSON.stringify writes it (no spaces, non-ASCII kept), so the bytes match the Node sample."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def public_jwk(public_key):
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def jwk_thumbprint(public_key):
    """RFC 7638 SHA-256 thumbprint: the required members in lexicographic order, no whitespace."""
    jwk = public_jwk(public_key)
    canonical = compact_json({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]})
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _create_exclusive(path, mode):
    try:
        # O_EXCL: fails if the file exists, so a factory key is never silently replaced.
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise SampleDeviceError(
            "file",
            "%s already exists; refusing to overwrite a device key" % path,
            hint="Choose another --name or --out-dir, or delete the old files yourself.",
        ) from None
    except OSError as error:
        raise SampleDeviceError("file", "cannot create %s (%s)" % (path, _errno_name(error))) from None


def _errno_name(error):
    return errno.errorcode.get(error.errno, "unknown error") if error.errno is not None else "unknown error"


def keygen(out_dir, name="device"):
    """Writes <name>.key.pem (PKCS#8, 0600) and <name>.pub.pem (SPKI, 0644) as the Node sample's keygen does."""
    if out_dir.strip() == "":
        raise usage_error("--out-dir", "must not be empty")
    if not KEY_NAME.fullmatch(name):
        raise usage_error("--name", "must be 1-128 characters of letters, digits, . _ : - and not start with a dot")
    directory = os.path.abspath(out_dir)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as error:
        raise SampleDeviceError("file", "cannot create directory %s (%s)" % (directory, _errno_name(error))) from None
    private_file = os.path.join(directory, name + ".key.pem")
    public_file = os.path.join(directory, name + ".pub.pem")

    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # Claim both names before writing anything, so a refusal leaves no half-written pair behind.
    private_fd = _create_exclusive(private_file, 0o600)
    try:
        public_fd = _create_exclusive(public_file, 0o644)
    except SampleDeviceError:
        os.close(private_fd)
        os.unlink(private_file)
        raise
    try:
        # The mode given to open() is filtered by the umask; make the private key's 0600 explicit.
        os.fchmod(private_fd, 0o600)
        os.write(private_fd, private_pem)
        os.write(public_fd, public_pem)
    finally:
        os.close(private_fd)
        os.close(public_fd)
    return {"privateKeyFile": private_file, "publicKeyFile": public_file, "thumbprint": jwk_thumbprint(key.public_key())}


def load_private_key(path, flag="--private-key"):
    """Reads a P-256 private key, PKCS#8 (what keygen writes) or SEC1 (what `openssl ecparam -genkey` writes).
    Errors name the flag and the path, never the key material."""
    if path.strip() == "":
        raise usage_error(flag, "must name a file")
    source = "%s %s" % (flag, path)
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except FileNotFoundError:
        raise SampleDeviceError("file", source + " does not exist") from None
    except PermissionError:
        raise SampleDeviceError("file", source + " is not readable") from None
    except IsADirectoryError:
        raise SampleDeviceError("file", source + " cannot be read (EISDIR)") from None
    except OSError as error:
        raise SampleDeviceError("file", "%s cannot be read (%s)" % (source, _errno_name(error))) from None
    if b"-----BEGIN EC PRIVATE KEY-----" not in pem and b"-----BEGIN PRIVATE KEY-----" not in pem:
        raise SampleDeviceError(
            "file",
            source + " is not a PEM private key (expected -----BEGIN PRIVATE KEY-----)",
            hint="Use the <name>.key.pem written by `keygen`, not the .pub.pem.",
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SampleDeviceError("file", source + " is not a readable private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SampleDeviceError("file", source + " is not a P-256 (ES256) private key")
    return key


def load_ca_file(path):
    """The CA certificate (PEM) a local DPS or hub is trusted with (--ca FILE), as text for the SDK."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            ca = f.read()
    except OSError as error:
        raise SampleDeviceError("file", "--ca %s cannot be read (%s)" % (path, _errno_name(error))) from None
    except UnicodeDecodeError:
        raise SampleDeviceError("file", "--ca %s is not a PEM certificate" % path) from None
    if "-----BEGIN CERTIFICATE-----" not in ca:
        raise SampleDeviceError("file", "--ca %s is not a PEM certificate" % path)
    return ca


def sign_device_token(private_key, registration_id, id_scope=None, provisioning_host=None, lifetime_seconds=None, kid=None, now=None, jti=None):
    """The registration token: the claims of the Node sample in its order (registration_id, id_scope,
    provisioning_host, sub, aud, iat, exp, jti) and its header (alg, typ, kid), as compact JSON."""
    assert_registration_id(registration_id)
    lifetime = DEFAULT_LIFETIME_SECONDS if lifetime_seconds is None else lifetime_seconds
    assert_lifetime(lifetime)
    iat = int(time.time()) if now is None else now
    claims = {"registration_id": registration_id}
    if id_scope is not None:
        claims["id_scope"] = id_scope
    if provisioning_host is not None:
        claims["provisioning_host"] = provisioning_host
    claims["sub"] = registration_id
    if id_scope is not None:
        claims["aud"] = id_scope
    claims["iat"] = iat
    claims["exp"] = iat + lifetime
    claims["jti"] = str(uuid.uuid4()) if jti is None else jti
    header = {"alg": TOKEN_ALGORITHM, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = b64url(compact_json(header).encode("utf-8")) + "." + b64url(compact_json(claims).encode("utf-8"))
    der = private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    # JWS ES256 (RFC 7518 §3.4): R || S, 32 bytes each, not DER.
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")), header, claims


def decode_symmetric_key(key, flag):
    """Decodes a base64 symmetric key, refusing anything that is not canonical base64. The key never enters the message."""
    trimmed = key.strip()
    unpadded = trimmed.rstrip("=")
    bad = usage_error(flag, "must be a base64 key as shown by DPS (primary or secondary key)")
    if unpadded == "" or not re.fullmatch(r"[A-Za-z0-9+/]+", unpadded) or len(unpadded) % 4 == 1:
        raise bad
    raw = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4))
    if len(raw) == 0 or base64.b64encode(raw).decode("ascii").rstrip("=") != unpadded:
        raise bad
    return raw


def derive_device_key(group_key, registration_id):
    """An enrollment group member's key: base64(HMAC-SHA256(base64decode(groupKey), utf8(registrationId))) (dps-protocol §3)."""
    digest = hmac.new(decode_symmetric_key(group_key, "--group-key"), registration_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")
