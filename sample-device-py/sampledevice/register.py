"""`register`: the device's registration with DPS through the official SDK's ProvisioningDeviceClient (symmetric-key
attestation over MQTT, or MQTT over WebSockets), with {"jwt": <token>} as the provisioning payload for the
custom-allocation webhook.

What the SDK tells of a refusal (azure-iot-device 2.14.0, provisioning/pipeline/pipeline_stages_provisioning.py and
provisioning_device_client.py `handle_result`): register() raises ClientError("Unexpected failure") whose cause is a
ServiceError naming only the HTTP status ("... returned a service error status code 401") or that the status was
"failed" ("... returned a failed registration status ..."). The registration state DPS sent with a failure,
errorCode and errorMessage included, is kept on the SDK's internal operation and never reaches the caller; the
RegistrationState model has no field for them. So this sample tells apart only what the status shows: 401
(unauthorized, exit 5), failed (refused, exit 6: DPS's 400207, 400208, 400209 alike), disabled (exit 8), and
another status (dps_failed, exit 9), and says so in its message.
"""
import json
import re
import time

from .errors import SampleDeviceError, usage_error
from .keys import (
    assert_lifetime,
    assert_registration_id,
    decode_symmetric_key,
    derive_device_key,
    jwk_thumbprint,
    load_ca_file,
    load_private_key,
    sign_device_token,
    DEFAULT_LIFETIME_SECONDS,
)
from .sdk import DEFAULT_DPS_HOST, chain, has_class, parse_host, tls_untrusted, within

DEFAULT_TIMEOUT_SECONDS = 120
TRANSPORTS = ("mqtt",)
ID_SCOPE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def pick_key(symmetric_key, group_key, registration_id):
    if symmetric_key is not None and group_key is not None:
        raise usage_error("--symmetric-key", "and --group-key exclude each other (also via DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY); give one")
    if symmetric_key is not None:
        decode_symmetric_key(symmetric_key, "--symmetric-key")
        return symmetric_key.strip(), "symmetric-key"
    if group_key is not None:
        return derive_device_key(group_key, registration_id), "group-key"
    raise usage_error("--symmetric-key", "or --group-key is required (or set DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY)")


def check_transport(transport):
    if transport == "http":
        raise usage_error(
            "--transport",
            "http is not available: the Python SDK (azure-iot-device 2.x) provisions over MQTT only; use mqtt, or --websockets for port 443",
        )
    if transport not in TRANSPORTS:
        raise usage_error("--transport", 'must be mqtt, got "%s"' % transport[:40])


def explain_registration_error(error, registration_id, where):
    """Maps what register() raised to our codes, from class names and the status code alone (see the module doc)."""
    if isinstance(error, SampleDeviceError):
        return error
    links = chain(error)
    text = " ".join(t for _, t in links)
    status = None
    found = re.search(r"status code (?:of )?(\d{3})", text)
    if found:
        status = int(found.group(1))
    prefix = "registration of %s failed: " % registration_id
    if "failed registration status" in text:
        return SampleDeviceError(
            "refused",
            prefix + "DPS reported status failed: the webhook refused this device (bad/expired token, unknown or "
            "disabled key...) or chose no hub. The Python SDK does not pass on DPS's error code or message.",
            hint="The webhook's log names the reason code for this registration id; `token` shows the claims this device signs.",
            dps_status="failed",
        )
    disabled = re.search(r"invalid registration status (\w+)", text)
    if disabled and disabled.group(1).lower() == "disabled":
        return SampleDeviceError(
            "disabled",
            prefix + "the enrollment or registration is disabled in DPS.",
            hint="Enable the enrollment (provisioningStatus: enabled) or ask the operator why it was disabled.",
            dps_status="disabled",
        )
    if status == 401 or has_class(links, "CredentialError", "UnauthorizedError"):
        return SampleDeviceError(
            "unauthorized",
            prefix + "DPS answered unauthorized%s: the symmetric key / SAS is wrong (or no enrollment in this id scope "
            "matches the registration id)." % (" (401)" if status == 401 else ""),
            hint="Check --id-scope and --registration-id, and that --symmetric-key is the enrollment's key or --group-key the group's.",
            http_status=status,
        )
    if "timed out before provisioning service could respond" in text or has_class(links, "OperationTimeout"):
        return SampleDeviceError("timeout", "DPS at %s did not answer a request within the SDK's 30 s limit" % where)
    if status is not None:
        return SampleDeviceError(
            "dps_failed",
            prefix + "DPS answered %d." % status,
            hint="DPS is throttling registrations; retry later with backoff." if status == 429 else None,
            http_status=status,
        )
    if tls_untrusted(links):
        return SampleDeviceError(
            "unreachable",
            "cannot reach DPS at %s: its TLS certificate is not trusted" % where,
            hint="For a local DPS pass its CA certificate with --ca FILE.",
        )
    if has_class(links, "ConnectionFailedError", "ConnectionDroppedError", "gaierror", "ConnectionRefusedError", "OSError", "socket.timeout", "TimeoutError"):
        return SampleDeviceError(
            "unreachable",
            "cannot reach DPS at %s (connection failed)" % where,
            hint="Check --host and that nothing blocks the connection (the Python SDK uses 8883, 443 with --websockets).",
        )
    return SampleDeviceError("internal", prefix + "unexpected %s from the SDK" % (links[0][0] if links else "error"))


def register(registration_id, id_scope, private_key_file, symmetric_key=None, group_key=None, host=None, transport="mqtt",
             websockets=False, ca_file=None, lifetime_seconds=None, kid=None, timeout_seconds=None, replace_token=None):
    """Registers through the official SDK; returns the registration (a dict shaped as the Node sample's result) or
    raises SampleDeviceError. `replace_token(signed) -> token` is for the tests only (not reachable from the CLI):
    it sends a tampered token or another device's token through the real SDK. Never puts the symmetric key, the SAS
    or the JWT into a result or an error."""
    assert_registration_id(registration_id)
    if not ID_SCOPE.fullmatch(id_scope):
        raise usage_error("--id-scope", "must be the DPS ID scope, e.g. 0ne00A1B2C3")
    check_transport(transport)
    host_flag = DEFAULT_DPS_HOST if host is None else host
    hostname = parse_host(host_flag, "--host", websockets)
    lifetime = DEFAULT_LIFETIME_SECONDS if lifetime_seconds is None else lifetime_seconds
    assert_lifetime(lifetime)
    if kid is not None and kid.strip() == "":
        raise usage_error("--kid", "must not be empty")
    timeout = DEFAULT_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
    if timeout <= 0:
        raise usage_error("--timeout", "must be at least 1 second")
    device_key, attestation = pick_key(symmetric_key, group_key, registration_id)

    private_key = load_private_key(private_key_file)
    ca = None if ca_file is None else load_ca_file(ca_file)

    now = int(time.time())
    jwt, _, _ = sign_device_token(private_key, registration_id, id_scope=id_scope, provisioning_host=host_flag.strip(),
                                  lifetime_seconds=lifetime, kid=kid, now=now)
    if replace_token is not None:
        jwt = replace_token(jwt)

    from azure.iot.device import ProvisioningDeviceClient  # imported here so keygen/token and --help need no SDK

    kind = "mqtt over websockets" if websockets else "mqtt"
    where = "%s over %s" % (host_flag.strip(), kind)
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=hostname,
        registration_id=registration_id,
        id_scope=id_scope,
        symmetric_key=device_key,
        websockets=websockets,
        **({} if ca is None else {"server_verification_cert": ca}),
    )
    client.provisioning_payload = {"jwt": jwt}

    def give_up():
        try:
            # Best effort, and bounded: we have already given up on this registration.
            within(client.shutdown, 5, lambda: SampleDeviceError("internal", "shutdown"))
        except Exception:
            pass
        return SampleDeviceError(
            "timeout",
            "registration of %s did not finish within %d s (%s)" % (registration_id, timeout, where),
            hint="DPS may still be retrying an unavailable webhook; raise --timeout or check the webhook.",
        )

    try:
        result = within(client.register, timeout, give_up)
    except SampleDeviceError:
        raise
    except KeyboardInterrupt:
        raise SampleDeviceError("interrupted", "registration of %s was interrupted" % registration_id) from None
    except Exception as error:
        raise explain_registration_error(error, registration_id, where) from None

    state = result.registration_state
    payload = None if state is None else state.response_payload
    if isinstance(payload, str):
        # The SDK hands the payload back as JSON text; the Node sample prints it parsed.
        try:
            payload = json.loads(payload)
        except ValueError:
            pass
    registration = {
        "registrationId": registration_id,
        "deviceId": (state.device_id if state is not None else None) or "",
        "assignedHub": (state.assigned_hub if state is not None else None) or "",
        "status": result.status or "assigned",
    }
    if state is not None and state.sub_status is not None:
        registration["substatus"] = state.sub_status
    if payload is not None:
        registration["payload"] = payload
    if state is not None and state.created_date_time is not None:
        registration["createdDateTimeUtc"] = state.created_date_time
    if state is not None and state.last_update_date_time is not None:
        registration["lastUpdatedDateTimeUtc"] = state.last_update_date_time
    registration.update({
        "transport": kind,
        "host": host_flag.strip(),
        "attestation": attestation,
        "keyThumbprint": jwk_thumbprint(private_key.public_key()),
        "tokenExpiresAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now + lifetime)),
    })
    try:
        within(client.shutdown, 5, lambda: SampleDeviceError("internal", "shutdown"))
    except Exception:
        pass
    return registration
