"""Fleet mode: one Helm release runs up to K devices of a batch (a StatefulSet, one pod per device).

The fleet values file is a contract with the charts' fleet mode (helm/*/templates/statefulset.yaml):

    identity:
      orgId: "myorg1"
      typeId: "iotpsutil"
    options:            # only when the devices' configs have one: exactly their options section
      domain: "..."
    devices:            # in batch order (a manifest batch: the manifest's order); gaps of the batch are simply
                        # absent; pod ordinal i runs devices[i], whatever its id
      - deviceId: "190523-0001"
        token: "..."

Strings are written as JSON strings, which are YAML double-quoted scalars: every character of a token comes back
exactly. Every device of one release shares orgId and options, so a batch whose configs disagree is refused.
"""

import json
import re

DEFAULT_FLEET_SIZE = 1000  # devices per release: the chart's Secret and release record stay far under 1 MiB
# About 80 bytes a device in a release's Secret and record (tests/test_fleet_charts.py): 5,000 keeps both near
# 400 KB, under the 512 KiB this project allows itself below Kubernetes' 1 MiB limit.
MAX_FLEET_SIZE = 5000
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def chunks(items, size):
    """`items` cut into lists of `size` (the last may be shorter), in order."""
    return [items[start:start + size] for start in range(0, len(items), size)]


def render_fleet_values(org_id, type_id, options, devices):
    """The text of one fleet release's values file; `devices` is [(deviceId, token)] in device order."""
    lines = ["# Fleet values written by deviceDeployer.py --fleet: every device's token. Keep it private.",
             "identity:", f"  orgId: {_scalar(org_id)}", f"  typeId: {_scalar(type_id)}"]
    if options:
        lines += ["options:", *_mapping(options, "  ")]
    lines.append("devices:")
    for device_id, token in devices:
        lines += [f"  - deviceId: {_scalar(device_id)}", f"    token: {_scalar(token)}"]
    return "\n".join(lines) + "\n"


def _mapping(mapping, indent):
    lines = []
    for key, value in mapping.items():
        key_text = key if isinstance(key, str) and _PLAIN_KEY.match(key) else _scalar(str(key))
        if isinstance(value, dict) and value:
            lines += [f"{indent}{key_text}:", *_mapping(value, indent + "  ")]
        else:
            lines.append(f"{indent}{key_text}: {_scalar(value)}")
    return lines


def _scalar(value):
    # JSON is YAML flow syntax: strings, numbers, booleans, null and lists all read back as they were.
    return json.dumps(value, ensure_ascii=True)
