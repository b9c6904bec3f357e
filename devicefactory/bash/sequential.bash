# --- from devicefactory/bash/sequential.bash: one helm command after another. A failed one is noted by the ERR
# trap and the script goes on; Ctrl-C or kill ends it once the running command has ended; `finish` lists the
# failed releases and exits 1 if there are any.
failed_releases=()
release_of() {  # release_of COMMAND: sets release to the word after the subcommand of a helm command line
  local pattern='(upgrade|uninstall|delete|--purge) +([a-z0-9][-a-z0-9]*)'
  if [[ $1 =~ $pattern ]]; then release=${BASH_REMATCH[2]}; else release=$1; fi
}
failed() {  # failed COMMAND: the ERR trap for a helm command that failed; note its release and go on
  local status=$? release
  release_of "$1"
  echo "${0##*/}: $release failed (exit status $status)" >&2
  failed_releases+=("$release")
}
list_failed() {
  if ((${#failed_releases[@]} > 0)); then
    echo "${0##*/}: ${#failed_releases[@]} release(s) failed:" >&2
    printf '  %s\n' "${failed_releases[@]}" >&2
  fi
}
stopped() {  # stopped COMMAND: the INT and TERM trap; bash runs it once the running helm command has ended
  local release
  trap - ERR
  release_of "$1"
  echo "${0##*/}: interrupted while $release was running; no further release was started" >&2
  list_failed
  exit 130
}
trap 'failed "$BASH_COMMAND"' ERR
trap 'stopped "$BASH_COMMAND"' INT TERM
finish() {  # after the last helm command: list the failed releases, exit 1 if there are any
  trap - ERR
  list_failed
  ((${#failed_releases[@]} == 0)) || exit 1
}
