"""A Python device built on the official Azure IoT Python SDK (azure-iot-device 2.x), used as shipped.

It registers through DPS with a symmetric key and a {"jwt": ...} payload, as the ECC-JWT sample did, then (when asked)
connects to the hub DPS assigned, reads its twin, waits for one desired-property patch and sends telemetry. Driven
by test/python-sdk/python-sdk.test.ts.

Input: one JSON object on stdin (keys are secrets, so never in argv):
  provisioningHost, idScope, registrationId, symmetricKey or groupKey, caFile, jwt (or null), websockets (bool),
  hub: null, or {gatewayHost, telemetry: {...}} to go on to the hub.
Output: one JSON object per line on stdout, each with an "event": assigned | registration | twin | ready_for_patch |
  patch | telemetry_sent | error. Never a key, token or SAS. Waits read stdin for nothing: the patch is awaited with
  an Event the SDK's handler sets.
"""
import base64
import hashlib
import hmac
import json
import sys
import threading
import time

from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def fail(error):
    cause = error.__cause__
    emit(
        "error",
        type=type(error).__module__ + "." + type(error).__name__,
        message=str(error),
        cause=None if cause is None else type(cause).__module__ + "." + type(cause).__name__,
        causeMessage=None if cause is None else str(cause),
    )
    sys.exit(1)


def derive_device_key(group_key, registration_id):
    """An enrollment group member's key, as Microsoft's docs derive it in Python (HMAC-SHA256 of the id)."""
    digest = hmac.new(base64.b64decode(group_key), registration_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def main():
    cfg = json.load(sys.stdin)
    if "groupKey" in cfg:
        cfg["symmetricKey"] = derive_device_key(cfg["groupKey"], cfg["registrationId"])
    with open(cfg["caFile"], encoding="utf-8") as f:
        ca = f.read()
    websockets = bool(cfg.get("websockets", False))

    # Provisioning: the SDK connects to provisioning_host on 8883 (443 with websockets); it takes no port.
    started = time.monotonic()
    provisioning_client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=cfg["provisioningHost"],
        registration_id=cfg["registrationId"],
        id_scope=cfg["idScope"],
        symmetric_key=cfg["symmetricKey"],
        server_verification_cert=ca,
        websockets=websockets,
    )
    if cfg.get("jwt") is not None:
        provisioning_client.provisioning_payload = {"jwt": cfg["jwt"]}
    try:
        result = provisioning_client.register()
    except Exception as error:  # the SDK's own exception type is what the test asserts
        fail(error)
    elapsed_ms = round((time.monotonic() - started) * 1000)
    state = result.registration_state
    emit(
        "assigned" if result.status == "assigned" else "registration",
        status=result.status,
        ms=elapsed_ms,
        assignedHub=None if state is None else state.assigned_hub,
        deviceId=None if state is None else state.device_id,
        substatus=None if state is None else state.sub_status,
        payload=None if state is None else state.response_payload,
    )
    if result.status != "assigned" or cfg.get("hub") is None:
        return

    # The hub: HostName is the assigned hub (it names the SAS resource); gateway_hostname is where the SDK connects.
    hub = cfg["hub"]
    device_client = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=cfg["symmetricKey"],
        hostname=state.assigned_hub,
        device_id=state.device_id,
        server_verification_cert=ca,
        gateway_hostname=hub["gatewayHost"],
        websockets=websockets,
    )
    try:
        device_client.connect()
        twin = device_client.get_twin()
        emit("twin", desired=twin.get("desired"), reported=twin.get("reported"))

        patched = threading.Event()
        patches = []

        def on_patch(patch):
            patches.append(patch)
            patched.set()

        # Setting the handler subscribes to desired-property updates before it returns (sync client).
        device_client.on_twin_desired_properties_patch_received = on_patch
        emit("ready_for_patch")
        if not patched.wait(timeout=60):
            emit("error", type="timeout", message="no desired-property patch within 60 s", cause=None)
            sys.exit(1)
        emit("patch", patch=patches[0])

        message = Message(json.dumps(hub["telemetry"]))
        message.content_type = "application/json"
        message.content_encoding = "utf-8"
        message.custom_properties["source"] = "python-sdk"
        device_client.send_message(message)
        emit("telemetry_sent")
    except Exception as error:
        fail(error)
    finally:
        device_client.shutdown()


if __name__ == "__main__":
    main()
