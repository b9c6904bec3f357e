"""The fake Watson IoT Platform: each route and rule over real HTTPS, its knobs, persistence and the command.

Tests use the session's fake (conftest's `fake_platform`); only those about a fake's life (restart, saved
state, the standalone command) start their own.
"""

import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from wiotp.sdk.api.common import ApiClient
from wiotp.sdk.api.registry import Registry
from wiotp.sdk.api.registry.devices import DeviceCreateRequest, DeviceInfo, DeviceUid
from wiotp.sdk.exceptions import ApiException

from devicefactory.fakeplatform import FakePlatform
from devicefactory.fakeplatform.statedir import StateError

REPO = Path(__file__).resolve().parent.parent
GOOD_TOKEN = "Passw0rd-xy"
# The platform's token rules, restated independently of the fake's code.
TOKEN_RULES = re.compile(r"[A-Za-z0-9_.!&@?*+()-]{8,36}\Z")


@pytest.fixture
def fake(fake_platform):
    return fake_platform


def call(fake, method, path, auth=None, **kwargs):
    """One HTTPS request to the fake's API, verified against its CA."""
    kwargs.setdefault("timeout", 5)
    return requests.request(method, f"https://{fake.address}/api/v0002/{path}",
                            auth=auth or (fake.api_key, fake.api_token), verify=fake.ca_file, **kwargs)


def add(fake, entries, **kwargs):
    return call(fake, "POST", "bulk/devices/add", json=entries, **kwargs)


def error_id(response):
    body = response.json()
    assert body["message"].startswith(body["exception"]["id"] + ": ")
    return body["exception"]["id"]


# -- set-up and authentication -------------------------------------------------------------------


def test_env_points_a_client_at_the_fake(fake):
    env = fake.env()
    assert re.fullmatch(r"a-myorg1-[a-z0-9]{10}", env["WIOTP_API_KEY"]) and env["WIOTP_API_KEY"] == fake.api_key
    assert env["WIOTP_API_TOKEN"] == fake.api_token
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env["WIOTP_OPTIONS_HTTP_HOST"]) and fake.address == env[
        "WIOTP_OPTIONS_HTTP_HOST"]
    assert Path(env["REQUESTS_CA_BUNDLE"]).read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_the_certificate_is_refused_without_the_fakes_ca(fake):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{fake.address}/api/v0002/device/types/x", auth=(fake.api_key, fake.api_token),
                     timeout=5)


@pytest.mark.parametrize("who, status", [("nobody", 401), ("wrong token", 401), ("unknown key", 403),
                                         ("other org", 403), ("bad key", 403)])
def test_wrong_credentials_get_401_and_unknown_keys_403(fake, who, status):
    auth = {
        "nobody": None,
        "wrong token": (fake.api_key, fake.api_token + "x"),
        "unknown key": ("a-myorg1-0000000000", fake.api_token),
        "other org": (fake.api_key.replace("myorg1", "other1"), fake.api_token),
        "bad key": ("myorg1-key", fake.api_token),
    }[who]
    response = requests.get(f"https://{fake.address}/api/v0002/device/types/x", auth=auth, verify=fake.ca_file,
                            timeout=5)
    assert response.status_code == status
    assert error_id(response) == ("FAKE0401E" if status == 401 else "FAKE0403E")
    assert response.headers.get("WWW-Authenticate", "").startswith("Basic") == (status == 401)


def test_api_key_of_another_org_is_refused_at_construction():
    with pytest.raises(ValueError):
        FakePlatform(org_id="myorg1", api_key="a-other1-0123456789")


# -- routes ------------------------------------------------------------------------------------------


def test_device_types_are_created_once_and_read_back(fake):
    response = call(fake, "POST", "device/types", json={"id": "psutil", "classId": "Device",
                                                        "description": "a virtual device"})
    assert response.status_code == 201
    created = response.json()
    assert {k: created[k] for k in ("id", "classId", "description", "deviceInfo", "metadata")} == {
        "id": "psutil", "classId": "Device", "description": "a virtual device", "deviceInfo": {}, "metadata": None}
    assert call(fake, "GET", "device/types/psutil").json() == created
    again = call(fake, "POST", "device/types", json={"id": "psutil", "classId": "Device"})
    assert again.status_code == 409 and "already exists" in again.json()["message"]
    assert call(fake, "GET", "device/types/nosuchtype").status_code == 404


@pytest.mark.parametrize("body", [{"id": "bad id", "classId": "Device"}, {"id": "x" * 37, "classId": "Device"},
                                  {"id": "ok", "classId": "Thing"}, {"id": "ok", "colour": "red"},
                                  {"id": "ok", "deviceInfo": {"colour": "red"}}, {"id": "ok", "metadata": [1]},
                                  {"id": "ok", "edgeConfiguration": "on"}, ["not", "an", "object"]])
def test_bad_device_types_get_400(fake, body):
    response = call(fake, "POST", "device/types", json=body)
    assert response.status_code == 400 and error_id(response) == "CUDRS0007E"
    assert call(fake, "GET", "device/types/ok").status_code == 404


def test_a_device_type_may_carry_an_edge_configuration(fake):
    edge = {"enabled": True, "architecture": "amd64", "edgeServices": []}  # swagger EdgeConfiguration
    response = call(fake, "POST", "device/types", json={"id": "edge", "classId": "Gateway", "edgeConfiguration": edge})
    assert response.status_code == 201 and response.json()["edgeConfiguration"] == edge
    update = call(fake, "PUT", "device/types/edge", json={"edgeConfiguration": {"enabled": False}})
    assert update.status_code == 200 and call(fake, "GET", "device/types/edge").json()["edgeConfiguration"] == {
        "enabled": False}


def test_a_missing_thing_is_named_in_the_properties_of_its_404(fake):
    response = call(fake, "GET", "device/types/nosuchtype")
    assert response.status_code == 404 and response.json()["exception"]["properties"] == ["nosuchtype"]
    fake.preregister("psutil", [])
    response = call(fake, "GET", "device/types/psutil/devices/d9")
    assert response.status_code == 404 and response.json()["exception"]["properties"] == ["psutil", "d9"]
    response = call(fake, "GET", "clientconnectionstates/d:myorg1:psutil:d9")
    assert response.status_code == 404 and response.json()["exception"]["properties"] == ["d:myorg1:psutil:d9"]


def test_bulk_add_registers_every_device_with_201(fake):
    fake.preregister("psutil", [])
    fake.preregister("gw", [], class_id="Gateway")
    response = add(fake, [{"typeId": "psutil", "deviceId": "d1", "authToken": GOOD_TOKEN},
                          {"typeId": "psutil", "deviceId": "d2", "metadata": {"batch": "b1"}},
                          {"typeId": "gw", "deviceId": "g.1", "authToken": None, "deviceInfo": None}])
    assert response.status_code == 201
    results = response.json()
    # swagger DeviceBatchResponse: typeId, deviceId, authToken, success, and nothing else.
    assert all(set(r) == {"typeId", "deviceId", "authToken", "success"} for r in results)
    assert [(r["typeId"], r["deviceId"], r["success"]) for r in results] == [
        ("psutil", "d1", True), ("psutil", "d2", True), ("gw", "g.1", True)]
    assert results[0]["authToken"] == GOOD_TOKEN
    assert TOKEN_RULES.match(results[1]["authToken"]) and TOKEN_RULES.match(results[2]["authToken"])
    stored = fake.device("psutil", "d2")
    assert stored["authToken"] == results[1]["authToken"] and stored["metadata"] == {"batch": "b1"}
    assert fake.devices_of("psutil") == ["d1", "d2"]


def test_bulk_add_answers_each_failure_with_success_false_and_202(fake):
    fake.preregister("psutil", ["taken"])
    response = add(fake, [{"typeId": "psutil", "deviceId": "new1"},
                          {"typeId": "psutil", "deviceId": "taken"},
                          {"typeId": "nosuchtype", "deviceId": "x1"},
                          {"typeId": "psutil", "deviceId": "new1"}])
    assert response.status_code == 202
    # The model has no reason: a failed entry says only that it failed.
    assert response.json()[1:] == [{"typeId": "psutil", "deviceId": "taken", "success": False},
                                   {"typeId": "nosuchtype", "deviceId": "x1", "success": False},
                                   {"typeId": "psutil", "deviceId": "new1", "success": False}]
    assert response.json()[0]["success"] is True
    assert fake.devices_of("psutil") == ["new1", "taken"]


@pytest.mark.parametrize("entry", [{"deviceId": "bad/id"}, {"deviceId": "x" * 37}, {"authToken": "passwrd"},
                                   {"deviceInfo": "not an object"}, {"colour": "red"}, {"deviceInfo": {"colour": 1}},
                                   {"location": {"latitude": 1}}])
def test_a_bulk_request_with_a_malformed_entry_is_refused_whole_with_400(fake, entry):
    fake.preregister("psutil", [])
    response = add(fake, [{"typeId": "psutil", "deviceId": "good1"}, {"typeId": "psutil", "deviceId": "d2", **entry}])
    assert response.status_code == 400 and error_id(response) == "CUDRS0007E"
    assert "passwrd" not in response.text  # a token is never echoed
    assert fake.devices_of("psutil") == []
    remove = call(fake, "POST", "bulk/devices/remove", json=[{"typeId": "psutil", "deviceId": "d1", "colour": "red"}])
    assert remove.status_code == 400


@pytest.mark.parametrize("token, accepted", [
    # The real platform took these two (iot-python's tests): no symbol; no capital.
    ("NotVerySecretPassw0rd", True), ("0b4d5e3c-1f2a-4aaa-8000-9c3e5f6a7b8c", True),
    (GOOD_TOKEN, True), ("aB3_efgh", True), ("aaB3(.)&@?*+!", True), ("aB1-" * 9, True),  # 36 characters
    ("ab3efffg", True), ("AB3_EFGH", True),  # a character three times in a row; no lowercase letter
    ("aBc_efgh", True), ("12345678", True), ("________", True),  # the documented rule asks for no letter or digit
    ("aB3_efg", False),  # 7 characters
    ("aB1-" * 9 + "x", False),  # 37 characters
    ("aB3_ef h", False), ("aB3_ef#h", False), ("aB3_éfgh", False),  # characters outside the set
])
def test_token_rules(fake, token, accepted):
    fake.preregister("psutil", [])
    response = add(fake, [{"typeId": "psutil", "deviceId": "d1", "authToken": token}])
    assert response.status_code == (201 if accepted else 400)
    assert fake.devices_of("psutil") == (["d1"] if accepted else [])


@pytest.mark.parametrize("body", [b"not json", b'{"typeId": "psutil", "deviceId": "d1"}', b"[]", b'["d1"]',
                                  b"\xff\xfe"])
def test_bulk_requests_that_are_not_a_list_of_objects_get_400(fake, body):
    fake.preregister("psutil", [])
    for path in ("bulk/devices/add", "bulk/devices/remove"):
        response = call(fake, "POST", path, data=body, headers={"content-type": "application/json"})
        assert response.status_code == 400 and error_id(response) == "CUDRS0007E"


def test_oversized_requests_get_413_and_change_nothing(fake):
    fake.preregister("psutil", [])
    fake.max_request_bytes = 2000
    entries = [{"typeId": "psutil", "deviceId": f"d{n:04d}"} for n in range(100)]
    response = add(fake, entries)
    assert response.status_code == 413 and error_id(response) == "FAKE0413E"
    assert fake.devices_of("psutil") == []
    assert fake.requests[-1]["status"] == 413 and fake.requests[-1]["bytes"] > 2000
    assert add(fake, entries[:10]).status_code == 201
    fake.reset()
    assert fake.max_request_bytes == 512 * 1024


def test_oversize_is_decided_from_content_length_before_any_body_arrives(fake):
    host, port = fake.address.split(":")
    context = ssl.create_default_context(cafile=fake.ca_file)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as connection:
            connection.sendall(b"POST /api/v0002/bulk/devices/add HTTP/1.1\r\nHost: fake\r\n"
                               b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer


def test_a_chunked_body_gets_411(fake):
    response = add(fake, None, data=iter([b"[", b"]"]), headers={"content-type": "application/json"})
    assert response.status_code == 411 and error_id(response) == "FAKE0411E"


def test_device_limit_refuses_the_whole_request_with_403(fake):
    fake.preregister("psutil", ["d1", "d2"])
    fake.device_limit = 4
    response = add(fake, [{"typeId": "psutil", "deviceId": f"n{n}"} for n in range(3)])
    assert response.status_code == 403 and "limit of 4 devices" in response.json()["message"]
    assert fake.devices_of("psutil") == ["d1", "d2"]
    # Failing entries do not count towards the limit.
    response = add(fake, [{"typeId": "psutil", "deviceId": n} for n in ("n1", "n2", "d1")])
    assert response.status_code == 202
    assert add(fake, [{"typeId": "psutil", "deviceId": "n3"}]).status_code == 403
    fake.reset()
    assert fake.device_limit is None


def test_a_device_document_never_shows_the_token(fake):
    tokens = fake.preregister("psutil", ["d1"])
    response = call(fake, "GET", "device/types/psutil/devices/d1")
    assert response.status_code == 200
    document = response.json()
    assert {"typeId", "deviceId", "clientId", "deviceInfo", "metadata", "registration", "status"} <= set(document)
    assert document["clientId"] == "d:myorg1:psutil:d1" and re.match(r"\d{4}-\d\d-\d\dT", document[
        "registration"]["date"])
    assert "authToken" not in document and tokens["d1"] not in response.text
    assert call(fake, "GET", "device/types/psutil/devices/d2").status_code == 404
    assert call(fake, "GET", "device/types/nosuchtype/devices/d1").status_code == 404


def test_listings_page_with_bookmarks_in_id_order(fake):
    fake.preregister("psutil", [f"d{n}" for n in (7, 3, 1, 6, 5, 2, 4)])
    fake.preregister("oshi", ["o2", "o1", "o3"])

    def collect(path, limit):
        seen, pages, params = [], 0, {"_limit": limit}
        while True:
            body = call(fake, "GET", path, params=params).json()
            assert body["meta"]["total_rows"] == (7 if "psutil" in path else 10)
            seen += [(d["typeId"], d["deviceId"]) for d in body["results"]]
            pages += 1
            if "bookmark" not in body:
                return seen, pages
            params["_bookmark"] = body["bookmark"]

    # The SDK lists a type's devices with a trailing slash.
    assert collect("device/types/psutil/devices/", 3) == ([("psutil", f"d{n}") for n in range(1, 8)], 3)
    assert collect("device/types/psutil/devices", 7) == ([("psutil", f"d{n}") for n in range(1, 8)], 1)
    everything = [("oshi", f"o{n}") for n in (1, 2, 3)] + [("psutil", f"d{n}") for n in range(1, 8)]
    assert collect("bulk/devices", 4) == (everything, 3)
    assert len(call(fake, "GET", "bulk/devices").json()["results"]) == 10  # default page size 25
    assert call(fake, "GET", "device/types/nosuchtype/devices").status_code == 404


@pytest.mark.parametrize("params", [{"_limit": 0}, {"_limit": 1001}, {"_limit": "ten"},
                                    {"_bookmark": "garbage!"}, {"_bookmark": "WyJhIiwgImIiXQ=="}])
def test_bad_paging_arguments_get_400(fake, params):
    fake.preregister("psutil", ["d1"])
    response = call(fake, "GET", "device/types/psutil/devices", params=params)
    assert response.status_code == 400 and error_id(response) == "CUDRS0007E"


def test_bulk_remove(fake):
    fake.preregister("psutil", ["d1", "d2", "d3"])
    response = call(fake, "POST", "bulk/devices/remove", json=[{"typeId": "psutil", "deviceId": "d1"},
                                                               {"typeId": "psutil", "deviceId": "d2"}])
    assert response.status_code == 202 and all(r["success"] for r in response.json())
    response = call(fake, "POST", "bulk/devices/remove", json=[{"typeId": "psutil", "deviceId": "d3"},
                                                               {"typeId": "psutil", "deviceId": "d1"},
                                                               {"typeId": "nosuchtype", "deviceId": "d1"}])
    assert response.status_code == 202
    assert [r["success"] for r in response.json()] == [True, False, False]
    assert all(set(r) == {"typeId", "deviceId", "success"} for r in response.json())  # DeviceBulkDeletionResponse
    assert fake.devices_of("psutil") == []
    assert call(fake, "GET", "bulk/devices").json()["meta"]["total_rows"] == 0


def test_keep_on_remove_answers_failure_and_keeps_the_device_until_reset(fake):
    fake.preregister("psutil", ["d1", "d2"])
    fake.keep_on_remove("psutil", ["d2"])
    response = call(fake, "POST", "bulk/devices/remove", json=[{"typeId": "psutil", "deviceId": "d1"},
                                                               {"typeId": "psutil", "deviceId": "d2"}])
    assert response.status_code == 202
    assert response.json() == [
        {"typeId": "psutil", "deviceId": "d1", "success": True},
        {"typeId": "psutil", "deviceId": "d2", "success": False}]
    assert fake.devices_of("psutil") == ["d2"]
    assert call(fake, "GET", "device/types/psutil/devices/d2").status_code == 200
    fake.reset()
    fake.preregister("psutil", ["d2"])
    assert call(fake, "POST", "bulk/devices/remove", json=[{"typeId": "psutil", "deviceId": "d2"}]).json()[0]["success"]
    assert fake.devices_of("psutil") == []


def test_unknown_routes_get_404_and_wrong_methods_405(fake):
    assert call(fake, "GET", "no/such/route").status_code == 404
    assert requests.get(f"https://{fake.address}/index.html", verify=fake.ca_file, timeout=5,
                        auth=(fake.api_key, fake.api_token)).status_code == 404
    response = call(fake, "DELETE", "bulk/devices/add")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_the_request_log_holds_no_bodies(fake):
    fake.preregister("psutil", [])
    add(fake, [{"typeId": "psutil", "deviceId": "d1", "authToken": GOOD_TOKEN}])
    call(fake, "GET", "device/types/psutil/devices/d1", params={"_limit": 1})
    assert [(r["method"], r["path"], r["query"], r["status"]) for r in fake.requests] == [
        ("POST", "/api/v0002/bulk/devices/add", "", 201),
        ("GET", "/api/v0002/device/types/psutil/devices/d1", "_limit=1", 200)]
    assert fake.requests[0]["bytes"] > 0 and fake.requests[1]["bytes"] == 0
    assert GOOD_TOKEN not in repr(fake.requests)


def test_concurrent_bulk_adds(fake):
    fake.preregister("psutil", [])
    statuses = []

    def register(worker):
        statuses.append(add(fake, [{"typeId": "psutil", "deviceId": f"w{worker}-{n}"} for n in range(50)])
                        .status_code)

    workers = [threading.Thread(target=register, args=(w,)) for w in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert statuses == [201] * 8 and len(fake.devices_of("psutil")) == 400


def test_a_4000_device_request_fits_the_default_limit(fake):
    fake.preregister("psutil", [])
    response = add(fake, [{"typeId": "psutil", "deviceId": f"190523-{n:04d}"} for n in range(1, 4001)])
    assert response.status_code == 201 and len(fake.devices_of("psutil")) == 4000


# -- failure knobs -----------------------------------------------------------------------------------


def test_fail_next_fails_matching_requests_without_applying_them(fake):
    fake.preregister("psutil", [])
    fake.fail_next(2, status=503, path="bulk/devices/add", retry_after=7)
    assert call(fake, "GET", "device/types/psutil").status_code == 200  # another path: unaffected
    for _ in range(2):
        response = add(fake, [{"typeId": "psutil", "deviceId": "d1"}])
        assert response.status_code == 503 and response.headers["Retry-After"] == "7"
        assert error_id(response) == "FAKE9999E"
        assert fake.devices_of("psutil") == []
    assert add(fake, [{"typeId": "psutil", "deviceId": "d1"}]).status_code == 201


def test_fail_next_without_path_matches_any_request(fake):
    fake.fail_next(1, status=500)
    response = call(fake, "GET", "device/types/psutil")
    assert response.status_code == 500 and "Retry-After" not in response.headers
    assert call(fake, "GET", "device/types/psutil").status_code == 404


def test_fail_next_after_processing_loses_the_answer_but_keeps_the_devices(fake):
    fake.preregister("psutil", [])
    fake.fail_next(1, status=502, after_processing=True)
    response = add(fake, [{"typeId": "psutil", "deviceId": "d1"}])
    assert response.status_code == 502 and "authToken" not in response.text
    assert fake.devices_of("psutil") == ["d1"] and fake.device("psutil", "d1")["authToken"]


@pytest.mark.parametrize("after_processing", [False, True])
def test_fail_next_can_drop_the_connection(fake, after_processing):
    fake.preregister("psutil", [])
    fake.fail_next(1, path="/add", drop_connection=True, after_processing=after_processing)
    with pytest.raises(requests.exceptions.ConnectionError):
        add(fake, [{"typeId": "psutil", "deviceId": "d1"}])
    assert fake.devices_of("psutil") == (["d1"] if after_processing else [])
    assert fake.requests[-1]["status"] is None
    assert add(fake, [{"typeId": "psutil", "deviceId": "d2"}]).status_code == 201


def test_delay_responses_makes_a_client_time_out(fake):
    fake.preregister("psutil", [])
    fake.delay_responses(0.5, path="bulk/devices/add")
    started = time.monotonic()
    assert call(fake, "GET", "device/types/psutil").status_code == 200
    assert time.monotonic() - started < 0.4
    with pytest.raises(requests.exceptions.ReadTimeout):
        add(fake, [{"typeId": "psutil", "deviceId": "d1"}], timeout=0.15)
    fake.delay_responses(0, path="bulk/devices/add")
    started = time.monotonic()
    assert add(fake, [{"typeId": "psutil", "deviceId": "d2"}]).status_code == 201
    assert time.monotonic() - started < 0.4
    # The timed-out request was still applied: the platform did the work, the client never heard.
    assert fake.devices_of("psutil") == ["d1", "d2"]


def test_a_request_answered_after_a_reset_stays_out_of_the_new_log(fake):
    # A delayed request of one test must not show up in the request log of the next (reset() between them).
    fake.preregister("psutil", [])
    fake.delay_responses(0.6, path="device/types/psutil")
    answer = []
    request = threading.Thread(target=lambda: answer.append(call(fake, "GET", "device/types/psutil").status_code))
    request.start()
    time.sleep(0.3)  # the request has been applied and is waiting for its delayed answer
    fake.reset()
    request.join()
    assert answer == [200]
    assert fake.requests == []
    assert call(fake, "GET", "device/types/psutil").status_code == 404  # recorded: it came after the reset
    assert [entry["status"] for entry in fake.requests] == [404]


def test_on_bulk_add_runs_after_applying_and_before_answering(fake):
    fake.preregister("psutil", ["old"])
    called, release, seen = threading.Event(), threading.Event(), []

    def hook(device_ids):
        seen.append((device_ids, fake.devices_of("psutil")))
        called.set()
        release.wait(5)

    fake.on_bulk_add = hook
    responses = []
    client = threading.Thread(target=lambda: responses.append(
        add(fake, [{"typeId": "psutil", "deviceId": "d1"}, {"typeId": "psutil", "deviceId": "old"}])))
    client.start()
    assert called.wait(5)
    time.sleep(0.1)
    assert responses == []  # the client has no answer while the hook blocks
    release.set()
    client.join(5)
    assert responses[0].status_code == 202
    assert seen == [(["d1"], ["d1", "old"])]


def test_reset_forgets_everything(fake):
    fake.preregister("psutil", ["d1"])
    fake.device_limit = 1
    fake.fail_next(5)
    fake.delay_responses(3)
    fake.on_bulk_add = lambda ids: None
    fake.connect("psutil", ["d1"])
    fake.lag_listing(60)
    fake.set_connection_monitoring(False)
    fake.reset()
    assert fake.requests == [] and fake.device_limit is None and fake.on_bulk_add is None
    started = time.monotonic()
    assert call(fake, "GET", "device/types/psutil").status_code == 404
    assert time.monotonic() - started < 1
    assert fake.device("psutil", "d1") is None and fake.devices_of("psutil") == []
    assert fake.connection_state("psutil", "d1") is None
    fake.preregister("psutil", ["d2"])
    assert len(call(fake, "GET", "bulk/devices").json()["results"]) == 1  # no lag
    assert call(fake, "GET", "clientconnectionstates").status_code == 200  # monitoring back on


def test_preregister_refuses_what_the_platform_would(fake):
    fake.preregister("psutil", ["d1"], token=GOOD_TOKEN)
    assert fake.device("psutil", "d1")["authToken"] == GOOD_TOKEN
    for bad in (dict(type_id="psutil", device_ids=["d1"]), dict(type_id="psutil", device_ids=["a b"]),
                dict(type_id="psutil", device_ids=["d2"], token="weak"), dict(type_id="", device_ids=[])):
        with pytest.raises(ValueError):
            fake.preregister(**bad)
    assert fake.devices_of("psutil") == ["d1"]


# -- through wiotp-sdk ---------------------------------------------------------------------------------


class SdkConfig:
    """The few attributes wiotp-sdk's ApiClient reads, pointed at the fake."""

    def __init__(self, fake):
        self.host = fake.address
        self.apiKey, self.apiToken = fake.api_key, fake.api_token
        self.credentials = (self.apiKey, self.apiToken)
        self.verify = fake.ca_file


def test_wiotp_sdk_registry_works_against_the_fake(fake):
    registry = Registry(ApiClient(SdkConfig(fake)))
    registry.devicetypes.create({"id": "psutil", "classId": "Device"})
    assert "psutil" in registry.devicetypes and "oshi" not in registry.devicetypes
    created = registry.devices.create(
        [DeviceCreateRequest(typeId="psutil", deviceId=f"d{n:02d}") for n in range(60)]
        + [DeviceCreateRequest(typeId="psutil", deviceId="d00")])
    assert [c.success for c in created] == [True] * 60 + [False]
    assert all(TOKEN_RULES.match(c.authToken) for c in created[:60])
    assert "d:myorg1:psutil:d07" in registry.devices
    # The SDK pages 50 at a time, so this follows a bookmark.
    assert [d.deviceId for d in registry.devicetypes["psutil"].devices] == [f"d{n:02d}" for n in range(60)]
    assert len(list(registry.devices)) == 60
    removed = registry.devices.delete([{"typeId": "psutil", "deviceId": "d00"}])
    assert removed[0]["success"] is True and "d:myorg1:psutil:d00" not in registry.devices


def registry_of(fake):
    return Registry(ApiClient(SdkConfig(fake)))


def test_sdk_device_types_create_get_update_list_and_delete(fake):
    registry = registry_of(fake)
    # Without classId the real platform makes a Device (iot-python: conftest.py, test_api_registry_devicetypes).
    created = registry.devicetypes.create({"id": "t1", "description": "This is a test", "metadata": None})
    assert created.classId == "Device" and created.description == "This is a test" and created.metadata is None
    with pytest.raises(ApiException) as exists:
        registry.devicetypes.create({"id": "t1"})
    assert exists.value.response.status_code == 409

    registry.devicetypes.update("t1", deviceInfo=DeviceInfo(serialNumber="111", model="m1"))
    updated = registry.devicetypes.update("t1", description="This is still a test",
                                          deviceInfo={"model": "m2"}, metadata={"k": "v"})
    assert updated.description == "This is still a test" and updated.metadata == {"k": "v"}
    assert (updated.deviceInfo.serialNumber, updated.deviceInfo.model) == ("111", "m2")
    again = registry.devicetypes.update("t1")  # everything null: nothing changes
    assert (again.description, again.metadata, again.deviceInfo.model) == ("This is still a test", {"k": "v"}, "m2")
    assert registry.devicetypes["t1"]["updatedDateTime"] == again["updatedDateTime"]
    with pytest.raises(ApiException) as missing:
        registry.devicetypes.update("nosuchtype", description="x")
    assert missing.value.response.status_code == 404

    for n in range(60):
        fake.preregister(f"type{n:02d}", [])
    assert [t.id for t in registry.devicetypes] == ["t1"] + [f"type{n:02d}" for n in range(60)]  # 2 pages

    fake.preregister("t1", ["d1"])
    with pytest.raises(ApiException) as in_use:  # a type with devices cannot go (iot-python: conftest.py)
        registry.devicetypes.delete("t1")
    assert in_use.value.response.status_code == 409
    registry.devices.delete([{"typeId": "t1", "deviceId": "d1"}])
    registry.devicetypes.delete("t1")
    assert "t1" not in registry.devicetypes
    assert fake.requests[-2]["method"] == "DELETE" and fake.requests[-2]["status"] == 204
    with pytest.raises(ApiException) as gone:
        registry.devicetypes.delete("t1")
    assert gone.value.response.status_code == 404


def test_sdk_device_create_update_and_delete_as_the_sdk_tests_do(fake):
    registry = registry_of(fake)
    device_type = registry.devicetypes.create({"id": "test"})
    request = DeviceCreateRequest(typeId="test", deviceId="dev-1", authToken="NotVerySecretPassw0rd",
                                  deviceInfo=DeviceInfo(serialNumber="123", descriptiveLocation="Floor 3, Room 2"))
    response = registry.devices.create(request)
    assert response.success is True and response.authToken == "NotVerySecretPassw0rd"
    assert "dev-1" in device_type.devices

    registry.devices.update(request, metadata={"foo": "bar"})
    after = device_type.devices["dev-1"]
    assert after.metadata == {"foo": "bar"} and after.deviceInfo.serialNumber == "123"
    registry.devices.update(request, deviceInfo={"description": "hello"})
    registry.devices.update(request, deviceInfo=DeviceInfo(model="foobar"), status={"alert": {"enabled": True}})
    after = device_type.devices["dev-1"]
    assert after.metadata == {"foo": "bar"}  # sent as null: kept
    assert (after.deviceInfo.description, after.deviceInfo.model, after.deviceInfo.descriptiveLocation,
            after.deviceInfo.fwVersion) == ("hello", "foobar", "Floor 3, Room 2", None)
    assert after["status"]["alert"]["enabled"] is True and str(after) == "[d:myorg1:test:dev-1] hello"
    assert fake.device("test", "dev-1")["authToken"] == "NotVerySecretPassw0rd"

    with pytest.raises(ApiException) as bad:
        registry.devices.update(request, deviceInfo={"colour": "red"})
    assert bad.value.response.status_code == 400
    with pytest.raises(ApiException) as missing:
        registry.devices.update(DeviceUid(typeId="test", deviceId="nobody"), metadata={"foo": "bar"})
    assert missing.value.response.status_code == 404

    del registry.devicetypes["test"].devices["dev-1"]
    assert "dev-1" not in device_type.devices and fake.device("test", "dev-1") is None
    with pytest.raises(KeyError):
        del registry.devices["d:myorg1:test:dev-1"]


def test_sdk_bulk_add_and_remove(fake):
    registry = registry_of(fake)
    registry.devicetypes.create({"id": "test"})
    ids = [DeviceUid(typeId="test", deviceId=str(uuid.UUID(int=n))) for n in (1, 2)]
    assert [r.success for r in registry.devices.create(ids)] == [True, True]
    removed = registry.devices.delete(ids + [DeviceUid(typeId="test", deviceId="nobody")])
    assert [r["success"] for r in removed] == [True, True, False]
    assert fake.requests[-1]["status"] == 202 and fake.devices_of("test") == []


def test_one_device_is_created_with_post_on_its_type(fake):
    fake.preregister("psutil", ["taken"])
    response = call(fake, "POST", "device/types/psutil/devices",
                    json={"deviceId": "d1", "metadata": {"batch": "b1"}, "deviceInfo": {"model": "m"}})
    assert response.status_code == 201
    created = response.json()
    assert created["clientId"] == "d:myorg1:psutil:d1" and TOKEN_RULES.match(created["authToken"])
    assert fake.device("psutil", "d1")["authToken"] == created["authToken"]
    assert call(fake, "GET", "device/types/psutil/devices/d1").json()["metadata"] == {"batch": "b1"}
    for body, status in [({"deviceId": "taken"}, 409), ({"deviceId": "bad id"}, 400),
                         ({"deviceId": "d2", "authToken": "short1"}, 400), ({"deviceId": "d2", "extra": 1}, 400)]:
        response = call(fake, "POST", "device/types/psutil/devices", json=body)
        assert response.status_code == status, body
        assert "short1" not in response.text
    assert call(fake, "POST", "device/types/nosuchtype/devices", json={"deviceId": "d2"}).status_code == 404
    fake.device_limit = 2
    assert call(fake, "POST", "device/types/psutil/devices", json={"deviceId": "d2"}).status_code == 403
    assert call(fake, "DELETE", "device/types/psutil/devices/d1").status_code == 204
    assert call(fake, "DELETE", "device/types/psutil/devices/d1").status_code == 404
    assert fake.devices_of("psutil") == ["taken"]


# -- the lagging listing -------------------------------------------------------------------------------


def listed(fake, path):
    return [d["deviceId"] for d in call(fake, "GET", path, params={"_limit": 100}).json()["results"]]


@pytest.mark.slow
def test_a_lagging_listing_catches_up_while_lookups_see_the_truth(fake):
    fake.preregister("psutil", ["old1", "old2"])
    time.sleep(0.45)
    fake.lag_listing(0.4)  # from now on the listing shows what was there 0.4 s ago
    assert add(fake, [{"typeId": "psutil", "deviceId": "new1"}]).status_code == 201
    assert call(fake, "POST", "bulk/devices/remove", json=[{"typeId": "psutil", "deviceId": "old2"}]).json()[0][
        "success"]
    for path in ("device/types/psutil/devices", "bulk/devices"):
        assert listed(fake, path) == ["old1", "old2"]  # the new device not yet, the removed one still
    assert call(fake, "GET", "bulk/devices").json()["meta"]["total_rows"] == 2
    assert call(fake, "GET", "device/types/psutil/devices/new1").status_code == 200
    assert call(fake, "GET", "device/types/psutil/devices/old2").status_code == 404
    again = add(fake, [{"typeId": "psutil", "deviceId": "new1"}])
    assert again.status_code == 202 and again.json()[0]["success"] is False
    assert fake.devices_of("psutil") == ["new1", "old1"]
    time.sleep(0.45)
    for path in ("device/types/psutil/devices", "bulk/devices"):
        assert listed(fake, path) == ["new1", "old1"]
    fake.lag_listing(60)
    fake.preregister("psutil", ["new2"])
    assert "new2" not in listed(fake, "bulk/devices")
    fake.lag_listing(0)
    assert "new2" in listed(fake, "bulk/devices")


# -- connection states ---------------------------------------------------------------------------------


def test_connection_states_through_the_sdk(fake):
    registry = registry_of(fake)
    fake.preregister("psutil", [f"d{n:02d}" for n in range(60)])
    fake.preregister("gw", ["g1"], class_id="Gateway")
    fake.preregister("psutil", ["never"])
    before = time.time()
    fake.connect("psutil", [f"d{n:02d}" for n in range(60)])
    fake.connect("gw", ["g1"])
    fake.disconnect("psutil", ["d01"])

    state = registry.connectionStatus["d:myorg1:psutil:d00"]
    assert state == fake.connection_state("psutil", "d00")
    # The fields of IBM's example (developer blog, 2018-09-27), and no other.
    assert list(state) == ["id", "clientType", "connectionStatus", "lastConnectTime", "lastDisconnectTime",
                           "lastActivityEvent", "lastActivityTime", "mqttConnectProtocol"]
    assert state["id"] == "d:myorg1:psutil:d00" and state["connectionStatus"] == "connected"
    assert state["clientType"] == "device" and state["mqttConnectProtocol"] == "3.1.1"
    assert state["lastDisconnectTime"] is None and state["lastActivityEvent"] == "mqttConnect"
    assert abs(datetime.fromisoformat(state["lastConnectTime"]).timestamp() - before) < 5
    assert state["lastActivityTime"] == state["lastConnectTime"]
    disconnected = registry.connectionStatus["d:myorg1:psutil:d01"]
    assert disconnected["connectionStatus"] == "disconnected"
    assert disconnected["lastDisconnectTime"] >= disconnected["lastConnectTime"]
    assert disconnected["lastActivityEvent"] == "mqttDisconnect"
    assert disconnected["lastActivityTime"] == disconnected["lastDisconnectTime"]
    assert "g:myorg1:gw:g1" in registry.connectionStatus
    assert registry.connectionStatus["g:myorg1:gw:g1"]["clientType"] == "gateway"
    # A device with no connection recorded has no state: absent from the listing, not found by its clientId.
    assert fake.connection_state("psutil", "never") is None
    assert "d:myorg1:psutil:never" not in registry.connectionStatus
    with pytest.raises(KeyError):
        registry.connectionStatus["d:myorg1:psutil:never"]

    everything = [s["id"] for s in registry.connectionStatus]  # 61 states: two pages of 50
    assert everything == [f"d:myorg1:psutil:d{n:02d}" for n in range(60)] + ["g:myorg1:gw:g1"]
    assert [s["id"] for s in registry.connectionStatus.find(typeId="gw")] == ["g:myorg1:gw:g1"]
    assert [s["id"] for s in registry.connectionStatus.find(deviceId="d07")] == ["d:myorg1:psutil:d07"]
    assert [s["id"] for s in registry.connectionStatus.find(connectionStatus="disconnected")] == [
        "d:myorg1:psutil:d01"]
    assert len(list(registry.connectionStatus.find(typeId="psutil", connectionStatus="connected"))) == 59
    later = datetime.fromtimestamp(time.time() + 0.05, UTC).isoformat()
    time.sleep(0.1)
    fake.connect("psutil", ["d05"])
    assert [s["id"] for s in registry.connectionStatus.find(connectedAfter=later)] == ["d:myorg1:psutil:d05"]

    registry.devices.delete([{"typeId": "psutil", "deviceId": "d05"}])  # removing a device removes its state
    assert fake.connection_state("psutil", "d05") is None and "d:myorg1:psutil:d05" not in registry.connectionStatus


def test_a_connection_can_end_by_itself_and_bad_filters_get_400(fake):
    fake.preregister("psutil", ["d1"])
    fake.connect("psutil", ["d1"], disconnect_after=0.2)
    assert fake.connection_state("psutil", "d1")["connectionStatus"] == "connected"
    time.sleep(0.3)
    state = call(fake, "GET", "clientconnectionstates/d:myorg1:psutil:d1").json()
    assert state["connectionStatus"] == "disconnected" and state["lastDisconnectTime"] is not None
    for params in ({"connectionStatus": "sleeping"}, {"connectedAfter": "yesterday"}, {"_limit": 0}):
        assert call(fake, "GET", "clientconnectionstates", params=params).status_code == 400
    with pytest.raises(ValueError):
        fake.connect("psutil", ["nobody"])
    fake.preregister("psutil", ["never"])
    with pytest.raises(ValueError):
        fake.disconnect("psutil", ["never"])
    # A client id holds letters, digits, '-', '_', '.' and ':' only: anything else is an error, not a 404.
    assert call(fake, "GET", "clientconnectionstates/15").status_code == 404
    for client_id in ("fff/kdk/f", "d:myorg1:psutil:d 1", "d:myorg1:psutil:d1%3F"):
        response = call(fake, "GET", f"clientconnectionstates/{client_id}")
        assert response.status_code == 400 and error_id(response) == "CUDRS0007E"


@pytest.mark.parametrize("listing_when_off", [403, 200])
def test_monitoring_off_is_told_by_config_clientstate_and_deletes_every_state(fake, listing_when_off):
    registry = registry_of(fake)
    fake.preregister("psutil", ["d1"])
    fake.connect("psutil", ["d1"])
    assert call(fake, "GET", "config/clientstate").json() == {"enabled": True}
    fake.set_connection_monitoring(False, listing_when_off=listing_when_off)
    # IBM docs: "If a 403 response is returned, the feature is not active."
    response = call(fake, "GET", "config/clientstate")
    assert response.status_code == 403 and "not active" in response.json()["message"]
    listing = call(fake, "GET", "clientconnectionstates")
    one = call(fake, "GET", "clientconnectionstates/d:myorg1:psutil:d1")
    if listing_when_off == 403:
        assert listing.status_code == one.status_code == 403
        with pytest.raises(ApiException) as off:
            _ = "d:myorg1:psutil:d1" in registry.connectionStatus  # the SDK asks the platform here
        assert off.value.response.status_code == 403
    else:
        assert listing.status_code == 200 and listing.json()["results"] == [] and one.status_code == 404
    fake.connect("psutil", ["d1"])  # recorded nowhere while the feature is off
    assert call(fake, "GET", "device/types/psutil/devices/d1").status_code == 200  # the registry still answers
    # PUT /config/clientstate turns it on; the states stored before were deleted when it went off.
    response = call(fake, "PUT", "config/clientstate", json={"enabled": True})
    assert response.status_code == 200 and response.json() == {"enabled": True} and fake.connection_monitoring
    assert "d:myorg1:psutil:d1" not in registry.connectionStatus
    fake.connect("psutil", ["d1"])
    assert "d:myorg1:psutil:d1" in registry.connectionStatus
    for body in ({"enabled": "yes"}, {"enabled": True, "colour": "red"}, {}):
        assert call(fake, "PUT", "config/clientstate", json=body).status_code == 400
    assert call(fake, "PUT", "config/clientstate", json={"enabled": False}).json() == {"enabled": False}
    assert not fake.connection_monitoring


def test_the_largest_page_size_is_a_knob(fake):
    fake.preregister("psutil", [f"d{n}" for n in range(5)])
    assert call(fake, "GET", "bulk/devices", params={"_limit": 1000}).status_code == 200
    assert call(fake, "GET", "bulk/devices", params={"_limit": 1001}).status_code == 400
    fake.max_page_size = 100
    for path in ("bulk/devices", "device/types", "device/types/psutil/devices", "clientconnectionstates"):
        response = call(fake, "GET", path, params={"_limit": 101})
        assert response.status_code == 400 and response.json()["exception"]["properties"] == ["_limit"]
        assert call(fake, "GET", path, params={"_limit": 100}).status_code == 200
    fake.reset()
    assert fake.max_page_size == 1000


def test_a_location_is_404_until_set_and_checked_when_set(fake):
    fake.preregister("psutil", ["d1"])
    path = "device/types/psutil/devices/d1/location"
    assert call(fake, "GET", path).status_code == 404
    response = call(fake, "PUT", path, json={"latitude": 50, "longitude": 60})
    assert response.status_code == 200
    assert set(response.json()) == {"latitude", "longitude", "measuredDateTime", "updatedDateTime"}
    assert call(fake, "GET", path).json() == response.json()
    refused = call(fake, "PUT", path, json={"latitude": 100, "longitude": 120})
    assert refused.status_code == 400 and error_id(refused) == "CUDHT0300I" and len(refused.json()["violations"]) == 1
    assert call(fake, "PUT", path, json={"latitude": 1, "longitude": 2, "colour": "red"}).status_code == 400
    assert call(fake, "GET", "device/types/psutil/devices/d1/mgmt").status_code == 404


# -- kept across restarts --------------------------------------------------------------------------------


def test_a_persistent_fake_keeps_its_registry_key_token_and_ca(tmp_path):
    state_dir = tmp_path / "state"
    with FakePlatform(state_dir=state_dir, persist=True, org_id="keep1") as first:
        registry_of(first).devicetypes.create({"id": "psutil"})
        tokens = {r.deviceId: r.authToken for r in registry_of(first).devices.create(
            [DeviceCreateRequest(typeId="psutil", deviceId=f"d{n}") for n in range(3)])}
        first.connect("psutil", ["d1"])
        env = first.env()
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in state_dir.iterdir()} == {
        "ca.pem": 0o644, "ca-key.pem": 0o600, "state.json": 0o600}
    ca_text = Path(env["REQUESTS_CA_BUNDLE"]).read_text()

    with FakePlatform(state_dir=state_dir) as second:  # any fake loads a saved state
        assert (second.org_id, second.api_key, second.api_token) == (
            "keep1", env["WIOTP_API_KEY"], env["WIOTP_API_TOKEN"])
        assert second.ca_file == env["REQUESTS_CA_BUNDLE"] and Path(second.ca_file).read_text() == ca_text
        registry = registry_of(second)  # verified with the CA file the first run wrote
        assert [d.deviceId for d in registry.devicetypes["psutil"].devices] == ["d0", "d1", "d2"]
        assert {d: second.device("psutil", d)["authToken"] for d in tokens} == tokens
        assert registry.connectionStatus["d:keep1:psutil:d1"]["connectionStatus"] == "connected"
        registry.devices.delete([{"typeId": "psutil", "deviceId": "d0"}])
    with FakePlatform(state_dir=state_dir) as third:  # not persist: the second's change was not saved
        assert third.devices_of("psutil") == ["d0", "d1", "d2"]

    with pytest.raises(ValueError):
        FakePlatform(state_dir=state_dir, org_id="other1")
    with pytest.raises(ValueError):
        FakePlatform(state_dir=state_dir, api_token="another-token")
    with FakePlatform(state_dir=tmp_path / "fresh") as fresh:  # no saved state: empty, new credentials
        assert fresh.devices_of("psutil") == [] and fresh.api_key != env["WIOTP_API_KEY"]
        assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["ca.pem"]


def test_a_damaged_or_unsafe_state_folder_is_refused(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(Exception, match="is not a saved fake platform state"):
        FakePlatform(state_dir=tmp_path)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(Exception, match="writable by no one else"):
        FakePlatform(state_dir=open_dir).start()
    (open_dir / "state.json").write_text("{}")
    with pytest.raises(Exception, match="writable by no one else"):  # checked before the state is read
        FakePlatform(state_dir=open_dir)


# -- standalone --------------------------------------------------------------------------------------


def run_standalone(*args, **kwargs):
    # Its MQTT broker on any free port: 8883, the default, may be taken on a shared machine.
    return subprocess.Popen([sys.executable, "-m", "devicefactory.fakeplatform", "--mqtt-port", "0", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def read_exports(process):
    env = {}
    while len(env) < 6:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        name, _, value = line.strip().removeprefix("export ").partition("=")
        env[name] = value
    return env


def test_standalone_prints_exports_serves_and_stops_on_sigterm(tmp_path):
    state_dir = tmp_path / "state"
    process = run_standalone("--org", "testorg", "--state-dir", str(state_dir), "--device-limit", "5")
    try:
        env = read_exports(process)
        assert re.fullmatch(r"a-testorg-[a-z0-9]{10}", env["WIOTP_API_KEY"])
        assert env["REQUESTS_CA_BUNDLE"] == env["WIOTP_OPTIONS_MQTT_CAFILE"] == str(state_dir / "ca.pem")
        assert env["WIOTP_OPTIONS_MQTT_PORT"] == "8883"  # what configs name; the broker's own port is pinned
        assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
        response = requests.get(f"https://{env['WIOTP_OPTIONS_HTTP_HOST']}/api/v0002/device/types/psutil",
                                auth=(env["WIOTP_API_KEY"], env["WIOTP_API_TOKEN"]),
                                verify=env["REQUESTS_CA_BUNDLE"], timeout=5)
        assert response.status_code == 404
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        errors = process.stderr.read()
        assert "GET /api/v0002/device/types/psutil -> 404" in errors
        assert re.search(r"deviceRunner.py --resolve testorg\.messaging\.internetofthings\.ibmcloud\.com:8883:"
                         r"127\.0\.0\.1:\d+\n", errors)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


@pytest.mark.slow
def test_standalone_keeps_its_state_across_a_restart(tmp_path):
    state_dir = tmp_path / "state"
    exports = []
    for run in ("today", "tomorrow"):
        process = run_standalone("--state-dir", str(state_dir))
        try:
            env = read_exports(process)
            exports.append({k: v for k, v in env.items() if k != "WIOTP_OPTIONS_HTTP_HOST"})
            sdk = SimpleNamespace(host=env["WIOTP_OPTIONS_HTTP_HOST"], apiKey=env["WIOTP_API_KEY"],
                                  apiToken=env["WIOTP_API_TOKEN"], verify=env["REQUESTS_CA_BUNDLE"])
            sdk.credentials = (sdk.apiKey, sdk.apiToken)
            registry = Registry(ApiClient(sdk))
            if run == "today":
                registry.devicetypes.create({"id": "psutil"})
                registry.devices.create(DeviceCreateRequest(typeId="psutil", deviceId="d1"))
            else:
                assert [d.deviceId for d in registry.devicetypes["psutil"].devices] == ["d1"]
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
            assert env["WIOTP_API_TOKEN"] not in process.stderr.read()
        finally:
            process.kill()
            process.wait()
            process.stdout.close()
            process.stderr.close()
    assert exports[0] == exports[1]
    other_org = subprocess.run([sys.executable, "-m", "devicefactory.fakeplatform", "--state-dir", str(state_dir),
                                "--org", "other1"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert other_org.returncode == 1 and "holds the state of another org_id" in other_org.stderr


@pytest.mark.slow
def test_standalone_help_and_bad_arguments(tmp_path):
    help_run = subprocess.run([sys.executable, "-m", "devicefactory.fakeplatform", "--help"], cwd=REPO,
                              capture_output=True, text=True, timeout=30)
    assert help_run.returncode == 0
    for flag in ("--port", "--mqtt-port", "--domain", "--org", "--state-dir", "--device-limit"):
        assert flag in help_run.stdout
    bad = subprocess.run([sys.executable, "-m", "devicefactory.fakeplatform", "--org", "My-Org"], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "is not an org id" in bad.stderr
    bad_domain = subprocess.run([sys.executable, "-m", "devicefactory.fakeplatform", "--domain", "bad domain",
                                 "--state-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert bad_domain.returncode == 2 and "Traceback" not in bad_domain.stderr  # it was idna's, from the CA
    assert "argument --domain: 'bad domain' is not a host name" in bad_domain.stderr


def test_a_second_fake_on_a_state_folder_in_use_is_refused_with_one_line(tmp_path):
    state_dir = tmp_path / "state"
    process = run_standalone("--state-dir", str(state_dir))
    try:
        read_exports(process)
        second = subprocess.run([sys.executable, "-m", "devicefactory.fakeplatform", "--state-dir", str(state_dir)],
                                cwd=REPO, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert second.stderr == (f"fakeplatform: {state_dir}: another fake platform is using this state folder; "
                                 "stop it first, or give this one another --state-dir\n")
        with pytest.raises(StateError, match="another fake platform is using"):
            FakePlatform(state_dir=state_dir).start()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()
    with FakePlatform(state_dir=state_dir):  # free again once the first has stopped
        pass
