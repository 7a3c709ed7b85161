"""What the official SDK (azure-iot-device 2.14.0) needs around it: the endpoint a host flag names, running a
blocking SDK call against a deadline, and reading the chain of exceptions the SDK raises.

The SDK's exceptions carry its own text (no key or SAS in 2.14.0, but nothing promises that), so callers only
match on their class names and a status code, and never print them."""
import logging
import re
import threading
from urllib.parse import urlsplit

from .errors import usage_error

DEFAULT_DPS_HOST = "global.azure-devices-provisioning.net"
# The SDK takes no port: MQTT over TLS always goes to 8883, MQTT over WebSockets to 443 (mqtt_transport.py `connect`).
MQTT_PORT = 8883
WEBSOCKETS_PORT = 443

# The SDK logs through the logging module; with no handler of ours its warnings would reach stderr unasked (the
# last-resort handler). Everything it has to say we report ourselves, in our own words.
logging.getLogger("azure.iot.device").addHandler(logging.NullHandler())
logging.getLogger("azure.iot.device").propagate = False


def parse_host(value, flag, websockets):
    """`host` or `host:port` -> the host name the SDK gets. A port is accepted only where the SDK will connect anyway."""
    host = value.strip()
    try:
        parts = urlsplit("https://" + host)
        port = parts.port
    except ValueError:
        raise usage_error(flag, "must be a host name, optionally with :port (e.g. localhost:8883)") from None
    if host == "" or "/" in host or "@" in host or "?" in host or "#" in host or not parts.hostname:
        raise usage_error(flag, "must be a host name, optionally with :port (e.g. localhost:8883), without scheme or path")
    expected = WEBSOCKETS_PORT if websockets else MQTT_PORT
    if port is not None and port != expected:
        raise usage_error(
            flag,
            "port must be %d%s: the Python SDK takes no port and always connects to %d%s"
            % (expected, " with --websockets" if websockets else "", expected, " (WebSockets)" if websockets else " (MQTT over TLS; 443 with --websockets)"),
        )
    # urlsplit lower-cases and strips IPv6 brackets; give the SDK the name as written, less the port.
    return re.sub(r":\d+$", "", host).strip("[]") if port is not None else host.strip("[]")


class _Outcome:
    def __init__(self):
        self.done = threading.Event()
        self.value = None
        self.error = None


def within(fn, seconds, on_timeout, stop=None):
    """Runs the blocking SDK call fn() in a daemon thread; returns its value, re-raises its exception, or raises
    on_timeout() after `seconds`. A Ctrl-C in the waiting (main) thread is a KeyboardInterrupt, as usual."""
    outcome = _Outcome()

    def run():
        try:
            outcome.value = fn()
        except BaseException as error:  # handed to the caller, which maps it
            outcome.error = error
        finally:
            outcome.done.set()

    threading.Thread(target=run, daemon=True).start()
    if not outcome.done.wait(seconds):
        raise on_timeout()
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


def chain(error):
    """The exception and its causes, innermost last, as (qualified class name, text) pairs, for matching only."""
    seen = []
    current = error
    while current is not None and len(seen) < 8:
        seen.append((type(current).__module__ + "." + type(current).__name__, str(current)))
        current = current.__cause__ or current.__context__
    return seen


def has_class(links, *names):
    return any(name.rsplit(".", 1)[-1] in names for name, _ in links)


def tls_untrusted(links):
    """A certificate the device does not trust, under whatever the SDK wrapped it in."""
    return any(
        name.endswith(("SSLCertVerificationError", "TlsExchangeAuthError")) or "CERTIFICATE_VERIFY_FAILED" in text
        for name, text in links
    )

