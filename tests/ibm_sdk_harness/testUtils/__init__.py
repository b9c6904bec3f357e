"""Our stand-in for IBM's test/testUtils (not shipped in the wiotp-sdk 1.0.1 sdist): the application client the
registry tests use, from the environment, with its REST calls sent to WIOTP_OPTIONS_HTTP_HOST."""

import os

import wiotp.sdk.application
from wiotp.sdk.api.common import ApiClient
from wiotp.sdk.api.registry import Registry


class _HostConfig(wiotp.sdk.application.ApplicationClientConfig):
    @property
    def host(self):
        return os.environ["WIOTP_OPTIONS_HTTP_HOST"]


def _application_client():
    client = wiotp.sdk.application.ApplicationClient(wiotp.sdk.application.parseEnvVars())
    client.registry = Registry(ApiClient(_HostConfig(**client._config), client.logger))
    return client


class AbstractTest:
    WIOTP_API_KEY = os.environ["WIOTP_API_KEY"]
    WIOTP_API_TOKEN = os.environ["WIOTP_API_TOKEN"]
    ORG_ID = WIOTP_API_KEY.split("-")[1]
    appClient = _application_client()
