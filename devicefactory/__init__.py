"""The device factory: register Watson IoT Platform devices in batches, then deploy them with Helm."""
