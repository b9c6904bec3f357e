# --- from devicefactory/bash/parallel.bash: up to max_parallel helm commands at a time (wait -n: bash 4.3).
# Needs: max_parallel, total (the run lines that follow) and log_prefix (names the folder of their output).
# shellcheck disable=SC2154  # max_parallel, total and log_prefix are set by the generated lines above
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 403)); then
  echo "${0##*/}: needs bash 4.3 or later to run releases in parallel; this is bash $BASH_VERSION" >&2
  exit 2
fi
logs=$(mktemp -d "${TMPDIR:-/tmp}/$log_prefix.XXXXXX") || exit 1  # each release's output, until it is shown
trap 'rm -rf -- "$logs"' EXIT
releases=() running=() failed_releases=() finished=0 not_started=0 stopping=0
trap 'stopping=1' INT TERM

run() {  # run RELEASE COMMAND...: start COMMAND in the background as soon as fewer than max_parallel run
  while ((${#running[@]} >= max_parallel && !stopping)); do wait_for_one; done
  if ((stopping)); then not_started=$((not_started + 1)); return; fi
  local job=${#releases[@]}
  releases+=("$1")
  shift
  # The job's shell outlives a Ctrl-C or kill, to write helm's exit status; its trap also undoes the SIGINT
  # ignoring bash gives background jobs, so helm itself gets Ctrl-C (and Helm 3 cancels its release).
  { trap : INT TERM; "$@" >"$logs/$job.out" 2>"$logs/$job.err"; echo "$?" >"$logs/$job.status"; } &
  running+=("$job")
}

wait_for_one() {  # wait until a release finishes, then report every release that has
  wait -n 2>/dev/null
  local none_left=$(($? == 127)) job status still=()
  for job in "${running[@]}"; do
    if [[ -s $logs/$job.status ]]; then
      read -r status <"$logs/$job.status"
      report "$job" "$status"
    elif ((none_left)); then
      report "$job" killed  # its shell ended before it could write the status
    else
      still+=("$job")
    fi
  done
  running=("${still[@]}")
}

report() {  # report JOB STATUS: show a finished release's helm output, then a progress line
  local job=$1 outcome=ok
  [[ -s $logs/$job.out ]] && printf '%s\n' "$(<"$logs/$job.out")"
  [[ -s $logs/$job.err ]] && printf '%s\n' "$(<"$logs/$job.err")" >&2
  if [[ $2 != 0 ]]; then
    outcome=failed
    failed_releases+=("${releases[job]}")
  fi
  finished=$((finished + 1))
  echo "[$finished/$total] ${releases[job]} $outcome"
}

finish() {  # wait for the last releases, then list the failed ones
  while ((${#running[@]} > 0)); do wait_for_one; done
  if ((${#failed_releases[@]} > 0)); then
    echo "${0##*/}: ${#failed_releases[@]} of ${#releases[@]} release(s) failed:" >&2
    printf '  %s\n' "${failed_releases[@]}" >&2
  fi
  if ((stopping)); then
    echo "${0##*/}: interrupted: $not_started release(s) were not started" >&2
    exit 130
  fi
  ((${#failed_releases[@]} == 0)) || exit 1
}
