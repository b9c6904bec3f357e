# --- from devicefactory/bash/helm-check.bash: once, up front (without it, a missing helm fails every line of a
# 1,000-release script). Needs: helm_cmd, the helm command the lines below run.
# shellcheck disable=SC2154  # helm_cmd is set by the generated line above
if ! command -v -- "$helm_cmd" >/dev/null 2>&1; then
  echo "${0##*/}: cannot find the helm command '$helm_cmd': install Helm, or write the scripts again with deviceDeployer.py --helmCmd" >&2
  exit 2
fi
