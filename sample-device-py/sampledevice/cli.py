"""The Python sample device's command line: parses arguments, calls a command, prints its result, and maps errors
to exit codes (errors.py). The same commands, flags, environment variables, output and exit codes as the Node sample
(sample-device/cli.ts); only this file reads argv and the environment. Commands raise and never exit."""
import json
import os
import sys
import time

from .connect import DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_TELEMETRY_INTERVAL_SECONDS, DEFAULT_TWIN_TIMEOUT_SECONDS
from .errors import EXIT_CODE_SUMMARIES, EXIT_CODES, SampleDeviceError, usage_error
from .keys import DEFAULT_LIFETIME_SECONDS, JTI, MAX_LIFETIME_SECONDS, assert_lifetime, assert_registration_id
from .sdk import DEFAULT_DPS_HOST
from .register import DEFAULT_TIMEOUT_SECONDS

PROGRAM = "sample-device-py"

REGISTER_OPTIONS = {
    "registration-id": str, "id-scope": str, "private-key": str, "symmetric-key": str, "group-key": str, "host": str,
    "transport": str, "websockets": bool, "ca": str, "lifetime": str, "kid": str, "timeout": str, "json": bool,
}
CONNECT_OPTIONS = {"hub-host": str, "count": str, "twin-timeout": str, "connect-timeout": str}
HELP = {"help": bool}

CONNECT_HELP = """  --hub-host H[:8883]     connect here instead of the hub's own name (the SDK's gateway_hostname); the
                          Python SDK always connects to 8883 (443 with --websockets), so a port must be that one.
                          Without it the device connects to the hub itself.
  --count N               telemetry messages to send (default: until Ctrl-C)
  --connect-timeout S     give up connecting after S seconds (default %d), exit 11
  --twin-timeout S        give up waiting for the twin after S seconds (default %d), exit 13""" % (
    DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_TWIN_TIMEOUT_SECONDS)

EXIT_TABLE = "\n".join("  %3d  %-22s %s" % (exit_code, code, EXIT_CODE_SUMMARIES[code]) for code, exit_code in EXIT_CODES.items())

COMMANDS = {
    "keygen": {
        "summary": "create the device P-256 key pair (PEM files)",
        "usage": PROGRAM + " keygen --out-dir DIR [--name NAME]",
        "options": {"out-dir": str, "name": str, **HELP},
        "help": """Creates a P-256 key pair for ES256 tokens (the same files as the Node sample's keygen):
  <NAME>.key.pem  private key, PKCS#8, mode 0600: stays on the device
  <NAME>.pub.pem  public key, SPKI: goes to the webhook's key store (DEVICE_KEYS_DIR/<registration id>.pem)
and prints the public key's JWK thumbprint (RFC 7638), a good --kid. Never overwrites an existing file.

Options:
  --out-dir DIR   directory for the files (created, mode 0700, if missing)
  --name NAME     file name stem, usually the registration id (default: device)
  -h, --help      show this help""",
    },
    "token": {
        "summary": "print a fresh registration token and its decoded header and claims",
        "usage": PROGRAM + " token --private-key FILE --registration-id ID [--id-scope S] [--host H] [--lifetime %d] [--kid K]" % DEFAULT_LIFETIME_SECONDS,
        "options": {"private-key": str, "registration-id": str, "id-scope": str, "host": str, "lifetime": str, "kid": str, "jti": str, "iat": str, **HELP},
        "help": """Signs the ES256 token `register` would send and prints it (first line), then its header and claims.
This command exists to inspect tokens: what it prints is a working credential until it expires.

Options:
  --private-key FILE      the device's private key (PKCS#8 or SEC1 PEM)
  --registration-id ID    goes into sub and registration_id
  --id-scope S            goes into aud and id_scope (the webhook may require it)
  --host H                goes into provisioning_host
  --lifetime SECONDS      exp - iat, 1..%d (default %d)
  --kid=K                 key id for the header (e.g. the thumbprint keygen printed; the = form
                          is needed when it starts with -, as a base64url thumbprint can)
  --jti ID                a fixed jti instead of a random UUID (test vectors; a replay store refuses a reused one)
  --iat SECONDS           a fixed iat (epoch seconds) instead of now (test vectors)
  -h, --help              show this help""" % (MAX_LIFETIME_SECONDS, DEFAULT_LIFETIME_SECONDS),
    },
    "register": {
        "summary": "register with DPS, presenting a signed token to the webhook",
        "usage": PROGRAM + " register --registration-id ID --id-scope S --private-key FILE (--symmetric-key KEY | --group-key KEY) [options]",
        "options": {**REGISTER_OPTIONS, **HELP},
        "help": """Signs a short-lived ES256 token, sends it as the provisioning payload {"jwt": ...} with the official Azure IoT
Python SDK (ProvisioningDeviceClient, symmetric-key attestation), and prints the assigned hub, device id and the
payload the webhook returned.

Options:
  --registration-id ID    the device's registration id
  --id-scope S            the DPS ID scope
  --private-key FILE      the device's private key (PKCS#8 or SEC1 PEM)
  --symmetric-key KEY     individual enrollment key (or env DEVICE_SYMMETRIC_KEY, kept out of shell history)
  --group-key KEY         enrollment group key; the device key is derived from it (or env DEVICE_GROUP_KEY)
  --host H[:8883]         DPS endpoint (default %s); the Python SDK takes no port: it
                          connects to 8883 (443 with --websockets), so a port given must be that one
  --transport T           mqtt (default; the Python SDK has no HTTP provisioning transport)
  --websockets            MQTT over WebSockets on port 443 (passes firewalls that block 8883)
  --ca FILE               extra CA certificates (PEM) to trust, e.g. a local DPS's
  --lifetime SECONDS      token lifetime, 1..%d (default %d)
  --kid=K                 key id for the token header (write --kid=K: a thumbprint may start with -)
  --timeout SECONDS       give up after this long (default %d)
  --json                  print the result (or the error) as JSON on stdout
  -h, --help              show this help

Neither the keys, the SAS token nor the JWT are ever printed.

A refused registration: the Python SDK passes on only the HTTP status and the registration status, not DPS's error
code nor the webhook's reason, so every status "failed" (DPS 400207, 400208, 400209) is exit 6.

Exit codes:
    0  assigned
%s""" % (DEFAULT_DPS_HOST, MAX_LIFETIME_SECONDS, DEFAULT_LIFETIME_SECONDS, DEFAULT_TIMEOUT_SECONDS, EXIT_TABLE),
    },
    "connect": {
        "summary": "connect to the assigned hub: print the desired properties, report back, send telemetry",
        "usage": PROGRAM + " connect --hub HUB --device-id ID (--symmetric-key KEY | --group-key KEY) [--hub-host H] [--ca FILE] [--count N]",
        "options": {**CONNECT_OPTIONS, "hub": str, "device-id": str, "symmetric-key": str, "group-key": str, "ca": str, "websockets": bool, "json": bool, **HELP},
        "help": """Connects to the IoT hub DPS assigned, with the official Azure IoT Python SDK (IoTHubDeviceClient) over MQTT
(TLS) and the device's key, prints the twin's desired properties, reports a property back, and sends a telemetry
message every desired telemetryInterval seconds (default %d; updates are followed) for --count messages or until
Ctrl-C.

Options:
  --hub HUB               the assigned hub's host name (register prints it)
  --device-id ID          the device id (register prints it; a group device's is its registration id)
  --symmetric-key KEY     the individual enrollment's key (or env DEVICE_SYMMETRIC_KEY)
  --group-key KEY         the enrollment group's key; the device key is derived (or env DEVICE_GROUP_KEY)
%s
  --websockets            MQTT over WebSockets on port 443
  --ca FILE               extra CA certificates (PEM) to trust, e.g. the local DPS's
  --json                  print the result (or the error) as JSON on stdout
  -h, --help              show this help

Nothing secret is printed. Exit codes: 0 done (also on Ctrl-C while sending telemetry), 11 hub_unreachable,
12 hub_unauthorized, 13 twin_timeout, 2 usage, 3 file, 130 Ctrl-C before the telemetry started.""" % (DEFAULT_TELEMETRY_INTERVAL_SECONDS, CONNECT_HELP),
    },
    "run": {
        "summary": "register, then connect to the assigned hub (register + connect in one)",
        "usage": PROGRAM + " run --registration-id ID --id-scope S --private-key FILE (--symmetric-key KEY | --group-key KEY) [register options] [--hub-host H] [--count N]",
        "options": {**REGISTER_OPTIONS, **CONNECT_OPTIONS, **HELP},
        "help": """Runs `register` (see its --help for the options and exit codes), then `connect` to the hub DPS assigned, with
the same key (and --websockets, if given): prints the desired properties, reports a property back, sends telemetry.

Connect options:
%s

Exit codes: those of register, then 11 hub_unreachable, 12 hub_unauthorized, 13 twin_timeout.""" % CONNECT_HELP,
    },
}


def tool_help():
    width = max(len(name) for name in COMMANDS)
    lines = "\n".join("  %s  %s" % (name.ljust(width), spec["summary"]) for name, spec in COMMANDS.items())
    return """%s: a device that registers with Azure IoT Hub DPS presenting an ES256 JWT signed with its factory key
(the official Azure IoT Python SDK; the same commands and flags as the Node sample-device)

Usage: %s <command> [options]

Commands:
%s

Run `%s <command> --help` for a command's options and `%s register --help` for exit codes.""" % (PROGRAM, PROGRAM, lines, PROGRAM, PROGRAM)


def command_help(name):
    return "Usage: %s\n\n%s" % (COMMANDS[name]["usage"], COMMANDS[name]["help"])


def parse_command_args(name, args):
    """--flag value, --flag=value and boolean --flag, as Node's util.parseArgs (strict, no positionals). Errors name
    the flag and never echo a value: a stray value may be a key."""
    options = COMMANDS[name]["options"]
    values = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            if arg.startswith("-") and len(arg) > 1 and arg != "--":
                raise usage_error(arg[:2], "is not an option of `%s` (see `%s %s --help`)" % (name, PROGRAM, name))
            raise SampleDeviceError("usage", "`%s` takes only --options; found a stray argument (a value without its flag?)" % name)
        flag, eq, inline = arg[2:].partition("=")
        kind = options.get(flag)
        if kind is None:
            shown = "--" + flag if all(c.isalnum() or c == "-" for c in flag) else "an option"
            raise usage_error(shown, "is not an option of `%s` (see `%s %s --help`)" % (name, PROGRAM, name))
        if kind is bool:
            if eq:
                raise usage_error("--" + flag, "takes no value")
            values[flag] = True
            i += 1
            continue
        if eq:
            values[flag] = inline
            i += 1
            continue
        if i + 1 >= len(args) or args[i + 1].startswith("-"):
            raise usage_error("--" + flag, "needs a value")
        values[flag] = args[i + 1]
        i += 2
    return values


def required(values, flag):
    value = values.get(flag)
    if not isinstance(value, str) or value.strip() == "":
        raise usage_error("--" + flag, "is required")
    return value


def seconds(values, flag):
    value = values.get(flag)
    if value is None:
        return None
    if not value.strip().isdigit() or not value.strip().isascii():
        raise usage_error("--" + flag, 'must be a whole number of seconds, got "%s"' % value[:40])
    return int(value.strip())


def key_flags(values, env):
    """Keys from flags, else from the environment (keeps them out of shell history and `ps`)."""
    symmetric, group = values.get("symmetric-key"), values.get("group-key")
    if symmetric is None and group is None:
        symmetric = env.get("DEVICE_SYMMETRIC_KEY") if (env.get("DEVICE_SYMMETRIC_KEY") or "").strip() else None
        group = env.get("DEVICE_GROUP_KEY") if (env.get("DEVICE_GROUP_KEY") or "").strip() else None
    return {"symmetric_key": symmetric, "group_key": group}


def connect_flags(values, out, err, as_json):
    count = values.get("count")
    if count is not None and not (count.strip().isdigit() and count.strip().isascii()):
        raise usage_error("--count", 'must be a whole number, got "%s"' % count[:40])
    twin_timeout, connect_timeout = seconds(values, "twin-timeout"), seconds(values, "connect-timeout")
    if twin_timeout == 0:
        raise usage_error("--twin-timeout", "must be at least 1 second")
    if connect_timeout == 0:
        raise usage_error("--connect-timeout", "must be at least 1 second")
    return {
        "hub_host": values.get("hub-host"),
        "count": None if count is None else int(count.strip()),
        "twin_timeout_seconds": twin_timeout,
        "connect_timeout_seconds": connect_timeout,
        "websockets": values.get("websockets") is True,
        # Progress lines go to stderr under --json, so stdout stays one JSON document.
        "print_line": err if as_json else out,
    }


def format_registration(r):
    payload = "(none)" if "payload" not in r else json.dumps(r["payload"], indent=2, ensure_ascii=False).replace("\n", "\n                 ")
    substatus = " (%s)" % r["substatus"] if "substatus" in r else ""
    return "\n".join([
        "%s registered over %s with %s" % (r["registrationId"], r["transport"], r["host"]),
        "  status:        %s%s" % (r["status"], substatus),
        "  assigned hub:  %s" % r["assignedHub"],
        "  device id:     %s" % r["deviceId"],
        "  payload:       %s" % payload,
        "  attestation:   %s; token signed by key %s, expires %s" % (r["attestation"], r["keyThumbprint"], r["tokenExpiresAt"]),
    ])


def format_connection(c):
    via = " (via %s)" % c["via"] if c["via"] != c["hub"] else ""
    return "\n".join([
        "%s connected to %s%s" % (c["deviceId"], c["hub"], via),
        "  desired:       %s" % json.dumps(c["desired"], separators=(",", ":"), ensure_ascii=False),
        "  reported:      %s" % json.dumps(c["reported"], separators=(",", ":"), ensure_ascii=False),
        "  telemetry:     %d message(s), every %s s; %d desired update(s) received" % (c["telemetrySent"], c["telemetryIntervalSeconds"], c["desiredUpdates"]),
    ])


def register_from(values, env):
    from .register import register

    timeout = seconds(values, "timeout")
    if timeout == 0:
        raise usage_error("--timeout", "must be at least 1 second")
    return register(
        registration_id=required(values, "registration-id"),
        id_scope=required(values, "id-scope"),
        private_key_file=required(values, "private-key"),
        host=values.get("host"),
        transport=values.get("transport", "mqtt"),
        websockets=values.get("websockets") is True,
        ca_file=values.get("ca"),
        lifetime_seconds=seconds(values, "lifetime"),
        kid=values.get("kid"),
        timeout_seconds=timeout,
        **key_flags(values, env),
    )


def run_command(name, values, out, err, env):
    if name == "keygen":
        from .keys import keygen

        r = keygen(required(values, "out-dir"), values.get("name", "device"))
        out("\n".join([
            "Wrote a P-256 key pair:",
            "  private key:  %s  (PKCS#8, mode 0600: keep it on the device)" % r["privateKeyFile"],
            "  public key:   %s  (SPKI: give it to the webhook's key store)" % r["publicKeyFile"],
            "  thumbprint:   %s  (JWK SHA-256 thumbprint, a good --kid=<thumbprint>)" % r["thumbprint"],
        ]))
        return
    if name == "token":
        from .keys import jwk_thumbprint, load_private_key, sign_device_token

        registration_id = required(values, "registration-id")
        # Argument errors first, so a typo is reported before any file is touched.
        assert_registration_id(registration_id)
        lifetime = seconds(values, "lifetime")
        if lifetime is not None:
            assert_lifetime(lifetime)
        kid = values.get("kid")
        if kid is not None and kid.strip() == "":
            raise usage_error("--kid", "must not be empty")
        jti = values.get("jti")
        if jti is not None and not JTI.fullmatch(jti):
            raise usage_error("--jti", "must be 1-128 of letters, digits, . _ : -")
        iat = seconds(values, "iat")
        key = load_private_key(required(values, "private-key"))
        token, header, claims = sign_device_token(key, registration_id, id_scope=values.get("id-scope"), provisioning_host=values.get("host"),
                                                  lifetime_seconds=lifetime, kid=kid, now=iat, jti=jti)
        expires = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(claims["exp"]))
        out("\n".join([
            token,
            "",
            "header: " + json.dumps(header, indent=2, ensure_ascii=False),
            "claims: " + json.dumps(claims, indent=2, ensure_ascii=False),
            "signed by key thumbprint %s; expires %s" % (jwk_thumbprint(key.public_key()), expires),
        ]))
        return
    as_json = values.get("json") is True
    if name == "register":
        r = register_from(values, env)
        out(json.dumps({"ok": True, **r}, indent=2, ensure_ascii=False) if as_json else format_registration(r))
        return
    from .connect import connect

    if name == "connect":
        c = connect(hub=required(values, "hub"), device_id=required(values, "device-id"), ca_file=values.get("ca"),
                    **key_flags(values, env), **connect_flags(values, out, err, as_json))
        out(json.dumps({"ok": True, **c}, indent=2, ensure_ascii=False) if as_json else format_connection(c))
        return
    # run
    flags = connect_flags(values, out, err, as_json)
    r = register_from(values, env)
    if not as_json:
        out(format_registration(r))
    c = connect(hub=r["assignedHub"], device_id=r["deviceId"], ca_file=values.get("ca"), **key_flags(values, env), **flags)
    out(json.dumps({"ok": True, "registration": r, "connection": c}, indent=2, ensure_ascii=False) if as_json else format_connection(c))


def main(argv, out, err, env):
    """Runs the CLI; returns the exit code."""
    if not argv or argv[0] in ("--help", "-h", "help"):
        out(tool_help())
        return EXIT_CODES["usage"] if not argv else 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        err('%s: error: unknown command "%s"\n\n%s' % (PROGRAM, name if name.startswith("-") else name[:40], tool_help()))
        return EXIT_CODES["usage"]
    as_json = False
    try:
        if "--help" in rest or "-h" in rest:
            out(command_help(name))
            return 0
        values = parse_command_args(name, rest)
        as_json = values.get("json") is True
        run_command(name, values, out, err, env)
        return 0
    except KeyboardInterrupt:
        failure = SampleDeviceError("interrupted", "interrupted")
    except SampleDeviceError as error:
        failure = error
    except Exception as error:  # a bug: name its type only, the text may quote an argument
        failure = SampleDeviceError("internal", "unexpected %s" % type(error).__name__)
    lines = ["%s %s: error: %s" % (PROGRAM, name, failure.message)]
    if failure.hint is not None:
        lines.append("  hint: " + failure.hint)
    if failure.code == "usage":
        lines.append("  usage: " + COMMANDS[name]["usage"])
    err("\n".join(lines))
    if as_json:
        body = {"ok": False, "code": failure.code, "exitCode": failure.exit_code, "message": failure.message}
        if failure.dps_status is not None:
            body["dpsStatus"] = failure.dps_status
        if failure.http_status is not None:
            body["httpStatus"] = failure.http_status
        if failure.hint is not None:
            body["hint"] = failure.hint
        out(json.dumps(body, indent=2, ensure_ascii=False))
    return failure.exit_code


def entry():
    def write(stream):
        return lambda text: (stream.write(text + "\n"), stream.flush())

    code = main(sys.argv[1:], write(sys.stdout), write(sys.stderr), os.environ)
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK can leave its pipeline threads behind after a failure or a timeout; do not let them hold the exit.
    os._exit(code)
