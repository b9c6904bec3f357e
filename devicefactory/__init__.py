"""The device factory: register Watson IoT Platform devices in batches, then deploy them with Helm."""

__version__ = "1.0.0"  # every script's --version
