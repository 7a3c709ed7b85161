"""Test-only entry points into the Python sample device (test/sample-device-py/*.test.ts), none reachable from its CLI.

  harness.py cli MODE OTHER_KEY OTHER_ID -- ARGS...
      runs the sample's own CLI (sampledevice.cli.main) with ARGS, but with the token it signed replaced before the
      SDK sends it, as the Node sample's replaceToken hook does for its tests: MODE `tamper` changes a claim and keeps
      the signature; MODE `other` sends OTHER_ID's own token, signed with OTHER_KEY. Exit code: the CLI's.
  harness.py batch < [{"argv": [...], "env": {...}}, ...]
      runs the sample's CLI (sampledevice.cli.main) once per case in this one process (a Python start per case would
      cost more than the cases) and prints [{"code", "stdout", "stderr"}, ...].
  harness.py explain < [{"outer", "cause", "text"}, ...]
      maps SDK exceptions (azure.iot.device.exceptions.<outer> raised from <cause> with the message <text>, as
      register() raises them) through the sample's explain_registration_error; prints [{"code", "message"}, ...].
  harness.py sas < {"idScope","registrationId","symmetricKey"|"groupKey","now"}
      prints {"deviceKey","sas"}: the device key the sample derives, and the SAS the official SDK builds from it at
      the fixed time `now`, through the SDK's own code path (abstract_provisioning_device_client.py
      create_from_symmetric_key: _form_sas_uri, SymmetricKeySigningMechanism, RenewableSasToken, ttl 3600).
"""
import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sample-device-py"))

from sampledevice import cli, keys  # noqa: E402
import sampledevice.register as register_module  # noqa: E402


def tampered(token):
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] = claims["exp"] + 60
    forged = keys.b64url(keys.compact_json(claims).encode("utf-8"))
    return ".".join([header, forged, signature])


def run_cli(mode, other_key, other_id, args):
    if mode == "tamper":
        replace = tampered
    elif mode == "other":
        def replace(signed):
            payload = signed.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            token, _, _ = keys.sign_device_token(keys.load_private_key(other_key), other_id, id_scope=claims.get("id_scope"))
            return token
    else:
        raise SystemExit("unknown mode " + mode)
    original = register_module.register
    register_module.register = lambda **options: original(replace_token=replace, **options)

    def write(stream):
        return lambda text: (stream.write(text + "\n"), stream.flush())

    code = cli.main(args, write(sys.stdout), write(sys.stderr), os.environ)
    sys.stdout.flush()
    os._exit(code)


def sas():
    cfg = json.load(sys.stdin)
    from azure.iot.device.common import auth
    from azure.iot.device.common.auth import sastoken as st
    from azure.iot.device.provisioning.abstract_provisioning_device_client import _form_sas_uri

    key = cfg["symmetricKey"] if "symmetricKey" in cfg else keys.derive_device_key(cfg["groupKey"], cfg["registrationId"])
    fixed = cfg["now"]
    time.time = lambda: fixed  # RenewableSasToken signs for time.time() + ttl
    token = st.RenewableSasToken(_form_sas_uri(id_scope=cfg["idScope"], registration_id=cfg["registrationId"]),
                                 auth.SymmetricKeySigningMechanism(key=key), ttl=3600)
    print(json.dumps({"deviceKey": key, "sas": str(token)}))


def batch():
    results = []
    for case in json.load(sys.stdin):
        out, err = [], []
        code = cli.main(case["argv"], lambda t: out.append(t + "\n"), lambda t: err.append(t + "\n"), case.get("env", {}))
        results.append({"code": code, "stdout": "".join(out), "stderr": "".join(err)})
    print(json.dumps(results))


def explain():
    import ssl
    from azure.iot.device import exceptions

    def make(name, text):
        cls = getattr(exceptions, name, None) or {"ConnectionRefusedError": ConnectionRefusedError, "ValueError": ValueError,
                                                   "SSLCertVerificationError": ssl.SSLCertVerificationError}[name]
        return cls(text)

    results = []
    for case in json.load(sys.stdin):
        outer = make(case["outer"], "Unexpected failure")
        if case.get("cause"):
            outer.__cause__ = make(case["cause"], case["text"])
        error = register_module.explain_registration_error(outer, "sensor-1", "dps.example over mqtt")
        results.append({"code": error.code, "exitCode": error.exit_code, "message": error.message, "hint": error.hint})
    print(json.dumps(results))


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        separator = sys.argv.index("--")
        run_cli(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[separator + 1:])
    elif sys.argv[1] == "batch":
        batch()
    elif sys.argv[1] == "explain":
        explain()
    elif sys.argv[1] == "sas":
        sas()
    else:
        raise SystemExit("usage: harness.py cli MODE OTHER_KEY OTHER_ID -- ARGS | harness.py batch | harness.py sas")
