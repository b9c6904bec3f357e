"""Fast tests of the registrator's pure parts and its journal: ids, tokens, request chunks, config format."""

import json
import os
import stat

import pytest
import yaml

from devicefactory.batch import Batch
from devicefactory.bulkrequests import body_size, bulk_add_entry, registered_with_nonce, split_under_limit
from devicefactory.ids import id_problem
from devicefactory.localregistry import DeviceConfigError, parse_device_config, render_device_config
from devicefactory.pendingtokens import PendingTokens
from devicefactory.platform import unreachable_hint
from devicefactory.tokens import TOKEN_LENGTH, new_device_token, redact_tokens, token_problem


@pytest.mark.parametrize("value, problem", [
    ("190523", None), ("a.b_c-D", None), ("x" * 36, None),
    ("", "must not be empty"), ("x" * 37, "is 37 characters long; the platform allows at most 36"),
    ("a b", "may hold only letters"), ("a/b", "may hold only letters"), ("é", "may hold only letters"),
    ("a;b", "may hold only letters"), (".", "cannot be '.' or '..'"), ("..", "cannot be '.' or '..'"),
])
def test_id_rules(value, problem):
    assert id_problem(value) == problem or problem in (id_problem(value) or "")
    assert (id_problem(value) is None) == (problem is None)


def test_device_ids_and_numbers_round_trip():
    batch = Batch("Device", "iotpsutil", "190523")
    assert [batch.device_id(n) for n in (1, 10, 1000, 10000)] == [
        "190523-0001", "190523-0010", "190523-1000", "190523-10000"]
    assert batch.device_number("190523-0042") == 42
    assert batch.device_number("190523-10000") == 10000
    assert [batch.device_number(d) for d in ("190523-42", "190523-00042", "190524-0001", "190523-0000", "190523-x")] == [None] * 5


def test_tokens_meet_the_platform_rules_and_differ():
    tokens = [new_device_token() for _ in range(2000)]
    assert all(token_problem(t) is None and len(t) == TOKEN_LENGTH for t in tokens)
    assert len(set(tokens)) == 2000


@pytest.mark.parametrize("token, problem", [
    ("Ab1!cdef", None), ("Ab1!cde", "must be 8 to 36"), ("Ab1!cdef" * 5, "must be 8 to 36"),
    ("ab1!cdefg", "needs a lowercase letter, an uppercase"), ("Ab1!cdef g", "may hold only"),
    ("Ab1!cdeef", "must not repeat"), ("Ab1!cdef$", "may hold only"),
])
def test_token_rules(token, problem):
    assert (token_problem(token) is None) == (problem is None)
    if problem:
        assert problem in token_problem(token)


def test_chunks_fit_the_limit_and_are_as_few_as_possible():
    entries = [bulk_add_entry("t", f"b-{n:04d}", new_device_token(), "n" * 16, "b") for n in range(1, 1001)]
    for limit in (1000, 4096, 50_000, 524_288):
        chunks = list(split_under_limit(entries, limit))
        assert [e for chunk in chunks for e in chunk] == entries
        assert all(body_size(chunk) <= limit for chunk in chunks)
        # Greedy packing: each chunk could not take the next entry.
        assert all(body_size(a + b[:1]) > limit for a, b in zip(chunks, chunks[1:], strict=False))
    assert body_size(entries[:3]) == len(json.dumps(entries[:3]))
    with pytest.raises(ValueError):
        list(split_under_limit(entries, 100))


def test_the_nonce_tells_our_devices_from_others():
    entry = bulk_add_entry("t", "b-0001", "Ab1!cdef", "abc", "b")
    assert registered_with_nonce({"metadata": entry["metadata"]}, "abc") is True
    assert registered_with_nonce({"metadata": entry["metadata"]}, "abd") is False
    # Every device the factory registers carries its nonce: one without the factory's metadata is not ours.
    assert registered_with_nonce({"metadata": {}}, "abc") is False and registered_with_nonce(None, "abc") is False
    # Factory metadata without a readable nonce cannot be told apart: neither ours nor theirs.
    assert registered_with_nonce({"metadata": {"deviceFactory": "x"}}, "abc") is None


def test_configs_round_trip_any_token_through_yaml():
    token = 'a"b\\c: #{}[]&*!|>\'%@`$(x)'
    text = render_device_config("org", "T.y_p-e", "b-0001", token, "example.com")
    assert yaml.safe_load(text) == parse_device_config(text) == {
        "identity": {"orgId": "org", "typeId": "T.y_p-e", "deviceId": "b-0001"},
        "auth": {"token": token}, "options": {"domain": "example.com"}}
    hand_written = "identity: {orgId: o, typeId: t, deviceId: d}\nauth:\n  token: x\n"
    assert parse_device_config(hand_written)["auth"]["token"] == "x"
    for bad, message in [("a: [", "not valid YAML"), ("- 1", "not a device config"), ("auth: {token: x}", "no identity"),
                         ("identity: {orgId: o, typeId: t}\nauth: {token: x}", "identity.deviceId is missing"),
                         ("identity: {orgId: o, typeId: t, deviceId: d}", "auth.token is missing")]:
        with pytest.raises(DeviceConfigError, match=message):
            parse_device_config(bad, "f.yaml")


def test_the_journal_replays_records_and_forgets_and_survives_a_torn_line(tmp_path):
    journal = PendingTokens(tmp_path)
    journal.record([("d1", "T1", "n"), ("d2", "T2", "n")])
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600
    with open(journal.path, "a") as torn:
        torn.write('{"id": "d3", "tok')  # a crash in the middle of an append
    journal.forget(["d1"])
    journal.record([("d4", "T4", "m")])
    assert journal.load() == {"d2": ("T2", "n"), "d4": ("T4", "m")}
    journal.rewrite({"d4": ("T4", "m")})
    assert journal.load() == {"d4": ("T4", "m")}
    journal.rewrite({})
    assert not journal.path.exists() and journal.load() == {}


def test_platform_messages_never_carry_a_token_through():
    assert redact_tokens("CUDRS0012E: authToken 'Ab1!cdef' is bad; Ab1!cdef", ["Ab1!cdef", "Zz9?yxwv"]) == (
        "CUDRS0012E: authToken '<token>' is bad; <token>")


def test_rest_calls_go_to_the_org_host_unless_wiotp_options_http_host_says_otherwise(monkeypatch):
    from devicefactory.platform import Platform, load_platform_config

    for name in [n for n in os.environ if n.startswith("WIOTP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WIOTP_API_KEY", "a-myorg1-abcdefghij")
    monkeypatch.setenv("WIOTP_API_TOKEN", "secret")
    assert Platform(load_platform_config()).config.host == "myorg1.internetofthings.ibmcloud.com"
    monkeypatch.setenv("WIOTP_OPTIONS_DOMAIN", "example.com")
    assert Platform(load_platform_config()).config.host == "myorg1.example.com"
    monkeypatch.setenv("WIOTP_OPTIONS_HTTP_HOST", "iot.example.net:8443")
    platform = Platform(load_platform_config())
    assert platform.config.host == "iot.example.net:8443"
    assert platform.registry.devices._apiClient._config.host == "iot.example.net:8443"  # what the SDK's calls use
    assert (platform.org_id, platform.domain) == ("myorg1", "example.com")


class _Config(dict):
    """What unreachable_hint reads of the SDK's config: options.http.host and the host it resolves to."""

    host = "myorg1.internetofthings.ibmcloud.com"


def test_an_unreachable_platform_names_where_its_host_comes_from():
    default = _Config(options={"http": {}})
    assert unreachable_hint(default, "connection failed") == (
        ": check the network, and that myorg1.internetofthings.ibmcloud.com (from the org in WIOTP_API_KEY (or "
        "WIOTP_AUTH_KEY) and WIOTP_OPTIONS_DOMAIN) is the platform's host and is up")
    assert "(from WIOTP_OPTIONS_HTTP_HOST)" in unreachable_hint(_Config(options={"http": {"host": "h:1"}}), "no answer in time")
    assert unreachable_hint(default, "HTTP 503") == ""  # it answered: the network is not the problem
