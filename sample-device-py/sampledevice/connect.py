"""`connect`: the device's life after DPS assigned it, with the official SDK's IoTHubDeviceClient: connect to the
assigned hub with the device's key, read the twin's desired properties, report a property back, and send telemetry
every desired `telemetryInterval` seconds (following updates) for `count` messages or until Ctrl-C. The same steps,
lines and result as the Node sample's connect (sample-device/commands/connect.ts). Never puts the key or a SAS into
a result, a line or an error."""
import datetime
import re
import threading

from .errors import SampleDeviceError, usage_error
from .keys import compact_json, decode_symmetric_key, derive_device_key, load_ca_file
from .sdk import chain, has_class, parse_host, tls_untrusted, within

DEFAULT_CONNECT_TIMEOUT_SECONDS = 30
DEFAULT_TWIN_TIMEOUT_SECONDS = 30
# When the twin has no usable desired telemetryInterval.
DEFAULT_TELEMETRY_INTERVAL_SECONDS = 30
MAX_TELEMETRY_INTERVAL_SECONDS = 24 * 3600
# An IoT Hub device id: up to 128 of letters, digits and - . + % _ # * ? ! ( ) , : = @ $ ' (iot-hub-devguide-identity-registry).
DEVICE_ID = re.compile(r"^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$")
HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
AGENT = "dps-jwt-webhook sample-device-py"


def now_iso():
    """UTC with milliseconds and Z, as JavaScript's toISOString."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def interval_from(desired, fallback):
    value = desired.get("telemetryInterval")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= MAX_TELEMETRY_INTERVAL_SECONDS
    return value if ok else fallback


def explain_connect_error(error, where):
    """The SDK raises CredentialError for CONNACK 5 (not authorized) and ConnectionFailedError for a socket or TLS
    failure (iothub/sync_clients.py `handle_result`); only our own words are shown."""
    if isinstance(error, SampleDeviceError):
        return error
    links = chain(error)
    if has_class(links, "CredentialError", "UnauthorizedError"):
        return SampleDeviceError(
            "hub_unauthorized",
            "the hub refused %s: not authorized (CONNACK 5)" % where,
            hint="the key is not this device's, or the device does not exist on that hub (registered through DPS first?)",
        )
    cause = "TLS certificate not trusted" if tls_untrusted(links) else "connection failed"
    return SampleDeviceError(
        "hub_unreachable",
        "cannot reach %s (%s)" % (where, cause),
        hint="is the hub (or the local one) running, and --hub-host right? An untrusted certificate needs --ca.",
    )


def connect(hub, device_id, symmetric_key=None, group_key=None, hub_host=None, ca_file=None, count=None,
            connect_timeout_seconds=None, twin_timeout_seconds=None, websockets=False, print_line=None):
    say = print_line or (lambda line: None)
    if not HOST_NAME.fullmatch(hub):
        raise usage_error("--hub", "must be the assigned hub's host name, e.g. hub-eu.azure-devices.net")
    if not DEVICE_ID.fullmatch(device_id):
        raise usage_error("--device-id", "must be an IoT Hub device id (1-128 characters)")
    if count is not None and (not isinstance(count, int) or count < 0):
        raise usage_error("--count", "must be a whole number >= 0")
    via = hub if hub_host is None else hub_host.strip()
    gateway = None if hub_host is None else parse_host(hub_host, "--hub-host", websockets)
    if symmetric_key is not None and group_key is not None:
        raise usage_error("--symmetric-key", "and --group-key exclude each other; give one")
    if symmetric_key is not None:
        decode_symmetric_key(symmetric_key, "--symmetric-key")
        device_key = symmetric_key.strip()
    elif group_key is not None:
        device_key = derive_device_key(group_key, device_id)  # a group device's id is its registration id
    else:
        raise usage_error("--symmetric-key", "or --group-key is required (or set DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY)")
    ca = None if ca_file is None else load_ca_file(ca_file)
    connect_timeout = connect_timeout_seconds or DEFAULT_CONNECT_TIMEOUT_SECONDS
    twin_timeout = twin_timeout_seconds or DEFAULT_TWIN_TIMEOUT_SECONDS

    from azure.iot.device import IoTHubDeviceClient, Message

    # hostname names the hub (SAS resource, MQTT username); gateway_hostname is where the SDK's socket goes.
    # No retries while connecting, so a wrong key or an unreachable hub is reported at once, with its own exit code.
    options = {"websockets": websockets, "connection_retry": False}
    if ca is not None:
        options["server_verification_cert"] = ca
    if gateway is not None:
        options["gateway_hostname"] = gateway
    client = IoTHubDeviceClient.create_from_symmetric_key(symmetric_key=device_key, hostname=hub, device_id=device_id, **options)
    where = "%s on %s%s" % (device_id, hub, " via " + via if via != hub else "")
    transport = "MQTT over WebSockets" if websockets else "MQTT over TLS"
    try:
        try:
            within(client.connect, connect_timeout,
                   lambda: SampleDeviceError("hub_unreachable", "no connection to %s within %d s" % (where, connect_timeout)))
        except KeyboardInterrupt:
            raise SampleDeviceError("interrupted", "interrupted") from None
        except Exception as error:
            raise explain_connect_error(error, where) from None
        say("connected: %s (%s)" % (where, transport))

        state = {"interval": DEFAULT_TELEMETRY_INTERVAL_SECONDS, "updates": 0, "version": None}
        wake = threading.Event()

        def on_patch(patch):
            version = patch.get("$version")
            # A patch already in the twin read below is not news.
            if state["version"] is not None and isinstance(version, int) and version <= state["version"]:
                return
            state["updates"] += 1
            say("desired update (version %s): %s" % (version, compact_json({k: v for k, v in patch.items() if k != "$version"})))
            merged = dict(state.get("desired", {}))
            merged.update(patch)
            following = interval_from(merged, state["interval"])
            state["desired"] = merged
            if following != state["interval"]:
                state["interval"] = following
                say("telemetry interval now %s s" % following)
                wake.set()

        def twin_failed(what):
            return lambda: SampleDeviceError("twin_timeout", "%s: %s within %d s" % (where, what, twin_timeout))

        try:
            # Subscribed before the twin is read, so no update falls between the two.
            within(lambda: setattr(client, "on_twin_desired_properties_patch_received", on_patch), twin_timeout, twin_failed("no subscription to desired updates"))
            twin = within(client.get_twin, twin_timeout, twin_failed("no twin"))
        except KeyboardInterrupt:
            raise SampleDeviceError("interrupted", "interrupted") from None
        except SampleDeviceError:
            raise
        except Exception as error:
            raise SampleDeviceError("twin_timeout", "%s: the twin could not be read (%s)" % (where, type(error).__name__)) from None
        desired = {k: v for k, v in (twin.get("desired") or {}).items() if k != "$metadata"}
        state["desired"] = dict(desired)
        state["version"] = desired.get("$version")
        state["interval"] = interval_from(desired, DEFAULT_TELEMETRY_INTERVAL_SECONDS)
        say("desired properties: %s" % compact_json(desired))

        reported = {"telemetryInterval": state["interval"], "startedAtUtc": now_iso(), "agent": AGENT}
        try:
            within(lambda: client.patch_twin_reported_properties(reported), twin_timeout,
                   twin_failed("the reported properties were not acknowledged"))
        except KeyboardInterrupt:
            raise SampleDeviceError("interrupted", "interrupted") from None
        except SampleDeviceError:
            raise
        except Exception as error:
            raise SampleDeviceError("twin_timeout", "%s: reporting properties failed (%s)" % (where, type(error).__name__)) from None
        say("reported: %s" % compact_json(reported))

        sent = 0
        try:
            while count is None or sent < count:
                if sent > 0:
                    # Sleep for the interval; a changed interval restarts the wait with the new value.
                    while True:
                        wake.clear()
                        if not wake.wait(state["interval"]):
                            break
                body = {"deviceId": device_id, "seq": sent + 1, "sentAtUtc": now_iso()}
                message = Message(compact_json(body))
                message.content_type = "application/json"
                message.content_encoding = "utf-8"
                message.custom_properties["source"] = "sample-device-py"
                try:
                    within(lambda: client.send_message(message), DEFAULT_CONNECT_TIMEOUT_SECONDS,
                           lambda: SampleDeviceError("hub_unreachable", "%s: telemetry not acknowledged within 30 s" % where))
                except SampleDeviceError:
                    raise
                except Exception as error:
                    raise explain_connect_error(error, where) from None
                sent += 1
                say("telemetry %d%s sent: %s" % (sent, "" if count is None else "/%d" % count, compact_json(body)))
        except KeyboardInterrupt:
            pass  # Ctrl-C while sending ends normally: the summary is printed, exit 0
        return {
            "hub": hub,
            "deviceId": device_id,
            "via": via,
            "desired": desired,
            "reported": reported,
            "telemetrySent": sent,
            "telemetryIntervalSeconds": state["interval"],
            "desiredUpdates": state["updates"],
        }
    finally:
        try:
            within(client.shutdown, 5, lambda: SampleDeviceError("internal", "shutdown"))
        except BaseException:
            pass
