"""The fake keeps the deviceInfo, location and metadata a bulk add carries (a manifest's rows), and answers the calls
a manifest re-run makes: the SDK's Devices.update() and Device.getLocation()/setLocation(), over real HTTPS.
(The location rules themselves are test_fakeplatform.py's.)"""

import pytest
from wiotp.sdk.api.common import ApiClient
from wiotp.sdk.api.registry import Registry
from wiotp.sdk.api.registry.devices import DeviceCreateRequest


class SdkConfig:
    """The few attributes wiotp-sdk's ApiClient reads, pointed at the fake."""

    def __init__(self, fake):
        self.host = fake.address
        self.apiKey, self.apiToken = fake.api_key, fake.api_token
        self.credentials = (self.apiKey, self.apiToken)
        self.verify = fake.ca_file


@pytest.fixture
def registry(fake_platform):
    registry = Registry(ApiClient(SdkConfig(fake_platform)))
    registry.devicetypes.create({"id": "sensor", "classId": "Device"})
    return registry


def test_attributes_are_stored_and_returned_and_updated_through_the_sdk(registry, fake_platform):
    created = registry.devices.create([DeviceCreateRequest(
        typeId="sensor", deviceId="m-1", deviceInfo={"serialNumber": "SN-1", "model": "X1"},
        location={"latitude": 52.37, "longitude": 4.89, "elevation": 3.5}, metadata={"line": 7})])
    assert created[0].success
    device = registry.devices["d:myorg1:sensor:m-1"]
    assert device.deviceInfo.serialNumber == "SN-1" and device.metadata == {"line": 7}
    assert "location" not in device  # the document carries none: GET .../location answers for it
    location = device.getLocation()
    assert (location.latitude, location.longitude) == (52.37, 4.89)

    # Devices.update: deviceInfo merged field by field (null keeps), metadata replaced whole.
    updated = registry.devices.update({"typeId": "sensor", "deviceId": "m-1"}, metadata={"line": 8},
                                      deviceInfo={"model": "X2", "serialNumber": None})
    assert updated.deviceInfo.model == "X2" and updated.deviceInfo.serialNumber == "SN-1"
    assert updated.metadata == {"line": 8}
    device.setLocation({"latitude": -33.86, "longitude": 151.21})
    assert registry.devices["d:myorg1:sensor:m-1"].getLocation().longitude == 151.21
    assert fake_platform.device("sensor", "m-1")["authToken"] == created[0].authToken  # an update keeps the token


def test_a_device_without_a_location_has_none(registry):
    registry.devices.create([DeviceCreateRequest(typeId="sensor", deviceId="m-2")])
    device = registry.devices["d:myorg1:sensor:m-2"]
    assert "location" not in device and device.getLocation() is None
