"""A local fake of the Watson IoT Platform's v0002 registry API: HTTPS on loopback, the platform's rules, knobs.

One module per concern: registry.py (rules and state, no HTTP), api.py (routes, authentication, paging,
error answers), server.py (TLS, the request log, transport faults), statedir.py (what --state-dir keeps),
fake.py (`FakePlatform`, the public face and control interface) and __main__.py (the command,
`python -m devicefactory.fakeplatform`). Each module names the sources of its rules.
"""

from .fake import FakePlatform

__all__ = ["FakePlatform"]
