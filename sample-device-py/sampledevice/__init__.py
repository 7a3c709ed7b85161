"""The Python sample device: registers with Azure IoT Hub DPS presenting an ES256 JWT signed with its factory key,
on the official azure-iot-device SDK. The same commands, flags, environment variables and exit codes as the Node
sample (sample-device/, docs/sample-device.md); see docs/sample-device-py.md."""
