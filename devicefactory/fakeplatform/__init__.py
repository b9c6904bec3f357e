"""A local fake of the Watson IoT Platform's v0002 registry API: HTTPS on loopback, the platform's rules, knobs.

One module per concern: registry.py (rules and state, no HTTP), api.py (routes, authentication, paging,
error answers), server.py (TLS, the request log, transport faults), statedir.py (what --state-dir keeps),
fake.py (`FakePlatform`, the public face and control interface) and __main__.py (the command,
`python -m devicefactory.fakeplatform`). Each module names the sources of its rules.
"""

__all__ = ["FakePlatform"]


def __getattr__(name):
    # Imported on first use: `python -m devicefactory.fakeplatform` imports this package first, and must be able
    # to say what to type when the fake's dependencies (trustme, amqtt) are missing (see projectpython.py).
    if name == "FakePlatform":
        from .fake import FakePlatform

        return FakePlatform
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
