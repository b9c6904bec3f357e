"""A hostile or broken platform: each malformed answer is one line naming the request, never a traceback or a hang;
and what status and decommission cost, whatever -n says.

A small HTTPS server on loopback (trustme's CA, verification on) answers the scripts' requests with the shapes
the API never promises; the local fake platform counts the requests of the cost tests."""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from conftest import clean_environment, run_decommissioner, run_registrator, run_status

TYPE_DOCUMENT = {"id": "iotpsutil", "classId": "Device"}
LISTING = "/api/v0002/device/types/iotpsutil/devices"
BULK_REMOVE = "/api/v0002/bulk/devices/remove"
BULK_ADD = "/api/v0002/bulk/devices/add"


class HostilePlatform:
    """HTTPS on loopback that answers from `answers` {(method, path): (status, body)} (a callable body is called
    with the request's query; the type's document is there to begin with, anything else is a 404); every request
    is counted in `requests`."""

    def __init__(self, tmp_path):
        self.answers = {("GET", "/api/v0002/device/types/iotpsutil"): (200, TYPE_DOCUMENT),
                        ("GET", "/api/v0002/config/clientstate"): (200, {"enabled": True})}
        self.requests = []
        ca = trustme.CA()
        self.ca_file = tmp_path / "hostile-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path, _, query = self.path.partition("?")
                platform.requests.append((method, path))
                status, body = platform.answers.get((method, path), (404, {"message": "not found"}))
                if callable(body):
                    body = body(query)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()

    def env(self):
        return clean_environment(WIOTP_API_KEY="a-myorg1-abcdefghij", WIOTP_API_TOKEN="secret-token",
                                 WIOTP_OPTIONS_HTTP_HOST=f"127.0.0.1:{self.server.server_address[1]}",
                                 REQUESTS_CA_BUNDLE=str(self.ca_file))


@pytest.fixture
def hostile(tmp_path):
    with HostilePlatform(tmp_path) as server:
        yield server


def one_line_error(result, prog):
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    return lines[0]


# Malformed listings: the status report pages the type's devices ------------------------------------------------

@pytest.mark.parametrize("body, said", [
    ([], "is a list, not the listing object the API promises"),
    ({"results": [], "meta": None}, "has a 'meta' that is null, not an object with total_rows"),
    ({"results": [], "meta": {"total_rows": "many"}},
     "has a 'meta.total_rows' that is the string \"many\", not a whole number"),
    ({"results": ["19-0001", "19-0002"], "meta": {"total_rows": 2}},
     "has a 'results' that holds the string \"19-0001\" where a per-device object belongs"),
    ({"results": {"deviceId": "19-0001"}, "meta": {"total_rows": 1}},
     "has a 'results' that is an object, not a list of per-device objects"),
    ({"results": [{"deviceId": ["19-0001"]}], "meta": {"total_rows": 1}},
     "has a 'results' that holds a 'deviceId' that is a list, not a string"),
], ids=["a-list", "meta-null", "total-rows-a-word", "results-strings", "results-an-object", "device-id-a-list"])
def test_a_malformed_listing_is_one_line_naming_the_request(hostile, workdir, body, said):
    hostile.answers[("GET", LISTING)] = (200, body)

    result = run_status(workdir, "-b", "19", "-n", "5", env=hostile.env())

    assert result.returncode == 1
    assert one_line_error(result, "deviceStatus.py") == (
        f"deviceStatus.py: error: cannot list the devices of type iotpsutil: the platform's answer {said}")
    assert hostile.requests.count(("GET", LISTING)) == 1  # a malformed answer is not retried


@pytest.mark.parametrize("path, body, request_named", [
    ("/api/v0002/device/types/iotpsutil", [], "look up device type iotpsutil"),
    ("/api/v0002/device/types/iotpsutil/devices/19-0001", None, "look up device iotpsutil:19-0001"),
    ("/api/v0002/device/types/iotpsutil/devices/19-0001", ["19-0001"], "look up device iotpsutil:19-0001"),
], ids=["type-a-list", "device-null", "device-a-list"])
def test_other_malformed_answers_are_one_line_naming_the_request(hostile, workdir, path, body, request_named):
    hostile.answers[("GET", path)] = (200, body)

    result = run_status(workdir, "-b", "19", "-n", "1", env=hostile.env())

    assert result.returncode == 1
    assert one_line_error(result, "deviceStatus.py") == (
        f"deviceStatus.py: error: cannot {request_named}: the platform's answer was not what the API promises")


def never_ending(query):
    """A listing whose every page names the same bookmark: a client that trusts it pages for ever."""
    return {"results": [{"typeId": "iotpsutil", "deviceId": "19-0001"}], "meta": {"total_rows": 5},
            "bookmark": "the-same-page"}


def test_a_never_ending_bookmark_stops_the_status_report(hostile, workdir):
    hostile.answers[("GET", LISTING)] = (200, never_ending)

    result = run_status(workdir, "-b", "19", "-n", "5", env=hostile.env(), timeout=60)

    assert result.returncode == 1
    assert one_line_error(result, "deviceStatus.py") == (
        "deviceStatus.py: error: cannot list the devices of type iotpsutil: page 2 named a bookmark an earlier page "
        "named: the listing would never end")
    assert hostile.requests.count(("GET", LISTING)) == 2


def test_new_bookmarks_for_ever_stop_once_the_rows_outgrow_the_listing(hostile, workdir):
    pages = iter(range(10**6))
    hostile.answers[("GET", LISTING)] = (200, lambda query: {
        "results": [{"typeId": "iotpsutil", "deviceId": "19-0001"}], "meta": {"total_rows": 5},
        "bookmark": f"page-{next(pages)}"})

    result = run_status(workdir, "-b", "19", "-n", "5", env=hostile.env(), timeout=60)

    assert result.returncode == 1
    assert one_line_error(result, "deviceStatus.py") == (
        "deviceStatus.py: error: cannot list the devices of type iotpsutil: 12 pages gave 12 rows of a listing "
        "that says it holds 5: the listing would never end")


@pytest.mark.slow
def test_an_empty_page_ends_the_listing_with_a_warning(hostile, workdir):
    hostile.answers[("GET", LISTING)] = (200, {"results": [], "meta": {"total_rows": 5}, "bookmark": "more"})
    hostile.answers[("GET", "/api/v0002/clientconnectionstates")] = (200, {"results": [], "meta": {"total_rows": 0}})

    result = run_status(workdir, "-b", "19", "-n", "5", env=hostile.env())

    assert "Traceback" not in result.stderr
    assert ("deviceStatus.py: warning: list the devices of type iotpsutil: page 1 holds no results but names a next "
            "page: taken as the end") in result.stderr
    assert "not-on-platform (5): 0001-0005" in result.stdout
    assert hostile.requests.count(("GET", LISTING)) == 1


@pytest.mark.slow
def test_the_registrators_recovery_listing_never_loops(hostile, workdir):
    # Every device "already exists", so the registrator looks for its own among the type's devices (60 > 50: by
    # the listing), which never ends: the run stops with one line, and every token stays in the journal.
    hostile.answers[("POST", BULK_ADD)] = (201, lambda query: [
        {"typeId": "iotpsutil", "deviceId": f"19-{n:04d}", "success": False, "error": "already exists"}
        for n in range(1, 61)])
    hostile.answers[("GET", LISTING)] = (200, never_ending)

    result = run_registrator(workdir, "-b", "19", "-n", "60", env=hostile.env(), timeout=60)

    assert result.returncode == 1
    line = one_line_error(result, "deviceRegistrator.py")
    assert "page 2 named a bookmark an earlier page named: the listing would never end" in line
    assert "60 devices may or may not be registered: their tokens are kept in" in line
    journal = workdir / "localDeviceRegistry/device/iotpsutil/19/.pending-tokens.jsonl"
    assert len(journal.read_text().splitlines()) == 60


# Malformed bulk answers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, body, said", [
    (202, None, "is null, not a list of per-device objects"),
    (202, {"results": []}, "is an object, not a list of per-device objects"),
    (200, ["removed"], "holds the string \"removed\" where a per-device object belongs"),
], ids=["202-null", "an-object", "strings"])
def test_a_malformed_bulk_remove_answer_is_one_line_and_deletes_nothing(hostile, workdir, status, body, said):
    hostile.answers[("POST", BULK_REMOVE)] = (status, body)

    result = run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", env=hostile.env())

    assert result.returncode == 1
    line = one_line_error(result, "deviceDecommissioner.py")
    assert line.startswith(f"deviceDecommissioner.py: error: decommission stopped: cannot remove 3 devices: the "
                           f"platform's answer {said}; 0 of 3 devices are off the platform")
    assert hostile.requests.count(("POST", BULK_REMOVE)) == 1


def test_a_malformed_bulk_add_answer_keeps_every_token(hostile, workdir):
    hostile.answers[("POST", BULK_ADD)] = (201, None)

    result = run_registrator(workdir, "-b", "19", "-n", "3", env=hostile.env())

    assert result.returncode == 1
    line = one_line_error(result, "deviceRegistrator.py")
    assert "cannot register 3 devices: the platform's answer is null, not a list of per-device objects" in line
    assert "3 devices may or may not be registered: their tokens are kept in" in line


# Bounded cost: -n far beyond the batch ----------------------------------------------------------------------------

def requests_since(fake, start):
    return fake.requests[start:]


@pytest.mark.slow
def test_status_of_a_small_batch_with_a_huge_n_costs_a_few_requests(fake_platform, workdir):
    assert run_registrator(workdir, "-b", "19", "-n", "10", fake=fake_platform).returncode == 0
    fake_platform.preregister("iotpsutil", [f"other-{n:04d}" for n in range(1, 1501)])  # two pages of 1,000
    fake_platform.connect("iotpsutil", ["19-0001"])
    start = len(fake_platform.requests)

    result = run_status(workdir, "-b", "19", "-n", "20000", fake=fake_platform, timeout=120)

    assert result.returncode == 3, result.stderr
    assert ("1 connected, 0 disconnected, 9 with no connection recorded since monitoring was activated, 19990 not on "
            "the platform; 10 with a local config.") in result.stdout
    sent = requests_since(fake_platform, start)
    # The clientstate setting, the type, two pages of its devices, and the connection states (a page, or one per
    # held device at most).
    assert len(sent) <= 4 + 10, [r["path"] for r in sent]
    assert not any(r["path"].startswith("/api/v0002/device/types/iotpsutil/devices/19-1") for r in sent)


@pytest.mark.slow
def test_decommission_of_a_small_batch_with_a_huge_n_costs_the_bulk_requests_and_a_few_more(fake_platform, workdir):
    assert run_registrator(workdir, "-b", "19", "-n", "10", fake=fake_platform).returncode == 0
    fake_platform.preregister("iotpsutil", ["19-0011"])  # registered elsewhere: no config here, removed all the same
    start = len(fake_platform.requests)

    result = run_decommissioner(workdir, "-b", "19", "-n", "20000", "--yes", fake=fake_platform, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "11 removed, 19989 already gone, 0 failed; 10 local configs deleted." in result.stdout
    sent = requests_since(fake_platform, start)
    bulk = [r for r in sent if r["path"] == BULK_REMOVE]
    others = [r for r in sent if r["path"] != BULK_REMOVE]
    assert 1 <= len(bulk) <= 4  # 20,000 entries of about 45 bytes: under 512 KiB each
    assert len(others) <= 3, [r["path"] for r in others]  # the type, and a page of its (now empty) listing
    assert fake_platform.devices_of("iotpsutil") == []
