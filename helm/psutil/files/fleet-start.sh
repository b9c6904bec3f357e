# shellcheck shell=sh disable=SC3028  # HOSTNAME: the kubelet sets it in every container's environment
# The start-up command of a fleet pod (POSIX sh): find this pod's device from its ordinal, read the device's ID and
# token from the release's Secret, mounted read-only in $FLEET_SECRET_DIR as <ordinal>.deviceId and <ordinal>.token,
# then exec the image's own client ("$@") with the same WIOTP_* variables a one-device release gives it.
# The token enters the environment here only, at exec time; it is never printed.
set -eu
# The ordinal: the apps.kubernetes.io/pod-index label (Kubernetes 1.28+) when present, else the pod name's suffix
# after its last '-' (a StatefulSet pod's hostname is its name on every Kubernetes version).
ordinal=${FLEET_POD_INDEX:-}
if [ -z "$ordinal" ]; then
  ordinal=${HOSTNAME:-}
  ordinal=${ordinal##*-}
fi
case $ordinal in
  '' | *[!0-9]*)
    echo "fleet-start: cannot tell this pod's ordinal (HOSTNAME=${HOSTNAME:-}); run me in a StatefulSet pod" >&2
    exit 1
    ;;
esac
device_file=$FLEET_SECRET_DIR/$ordinal.deviceId
token_file=$FLEET_SECRET_DIR/$ordinal.token
if [ ! -r "$device_file" ] || [ ! -r "$token_file" ]; then
  echo "fleet-start: the release has no device for pod ordinal $ordinal (no $device_file and $token_file); were its replicas changed by hand?" >&2
  exit 1
fi
WIOTP_IDENTITY_DEVICEID=$(cat "$device_file")
WIOTP_AUTH_TOKEN=$(cat "$token_file")
export WIOTP_IDENTITY_DEVICEID WIOTP_AUTH_TOKEN
echo "fleet-start: pod ordinal $ordinal runs device $WIOTP_IDENTITY_DEVICEID"
exec "$@"
