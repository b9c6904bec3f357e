"""Our stand-in for IBM's test/conftest.py (not shipped in the wiotp-sdk 1.0.1 sdist), copied in as conftest.py beside
IBM's tests: the fixtures the registry tests ask for."""

import os
import uuid

import pytest
from testUtils import AbstractTest
from wiotp.sdk.api.registry.devices import DeviceCreateRequest


@pytest.fixture
def testUtil():
    return AbstractTest()


@pytest.fixture
def deviceType(request, testUtil):
    """A device type per test module, created when the platform does not hold it yet."""
    type_id = f"iotpython_{request.module.__name__}"[:32]
    types = testUtil.appClient.registry.devicetypes
    return types[type_id] if type_id in types else types.create({"id": type_id})


@pytest.fixture
def authToken():
    return str(uuid.uuid4())


@pytest.fixture
def device(request, testUtil, deviceType, authToken):
    """A device named after the test, registered afresh with `authToken`, removed after the test."""
    registry = testUtil.appClient.registry
    device_id = request.function.__name__[:32]
    if device_id in deviceType.devices:
        registry.devices.delete({"typeId": deviceType.id, "deviceId": device_id})
    registry.devices.create(DeviceCreateRequest(typeId=deviceType.id, deviceId=device_id, authToken=authToken))
    yield registry.devices[f"d:{os.environ['WIOTP_ORG_ID']}:{deviceType.id}:{device_id}"]
    registry.devices.delete({"typeId": deviceType.id, "deviceId": device_id})
