"""Every failure carries a stable code; EXIT_CODES is the one table from code to process exit code, the same numbers
as the Node sample (sample-device/errors.ts). Commands raise SampleDeviceError and never exit; cli.py prints the
message (and hint). Messages are built from our own text, never from an SDK exception's text or arguments, so no
key, SAS or token can reach them."""

EXIT_CODES = {
    "internal": 1,
    "usage": 2,
    "file": 3,
    "unreachable": 4,
    "unauthorized": 5,
    "refused": 6,
    "webhook_misconfigured": 7,
    "disabled": 8,
    "dps_failed": 9,
    "timeout": 10,
    "hub_unreachable": 11,
    "hub_unauthorized": 12,
    "twin_timeout": 13,
    "interrupted": 130,
}

EXIT_CODE_SUMMARIES = {
    "internal": "unexpected error (a bug)",
    "usage": "bad or missing arguments",
    "file": "key or CA file missing, unreadable, wrong kind, or would be overwritten",
    "unreachable": "DPS not reachable (DNS, connection, untrusted TLS certificate)",
    "unauthorized": "DPS 401: wrong symmetric key / SAS, or no matching enrollment",
    "refused": "DPS reported the registration failed (the webhook refused this device, or chose no hub)",
    "webhook_misconfigured": "(not told apart by the Python SDK: reported as refused, 6)",
    "disabled": "the enrollment is disabled",
    "dps_failed": "another DPS failure (its HTTP status printed)",
    "timeout": "no result within --timeout",
    "hub_unreachable": "the assigned hub is not reachable (connection, DNS, TLS trust, no answer)",
    "hub_unauthorized": "the hub refused the device (CONNACK 5: wrong key or unknown device)",
    "twin_timeout": "connected, but no twin / reported-properties answer in time",
    "interrupted": "Ctrl-C",
}


class SampleDeviceError(Exception):
    def __init__(self, code, message, hint=None, flag=None, dps_status=None, http_status=None):
        super().__init__(message)
        if code not in EXIT_CODES:
            raise ValueError("unknown error code " + code)
        self.code = code
        self.message = message
        self.hint = hint
        self.flag = flag
        self.dps_status = dps_status
        self.http_status = http_status

    @property
    def exit_code(self):
        return EXIT_CODES[self.code]


def usage_error(flag, message):
    """A usage error about one flag; the message starts with the flag so the user sees which one."""
    return SampleDeviceError("usage", flag + " " + message, flag=flag)
