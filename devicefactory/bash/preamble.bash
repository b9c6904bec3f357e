# --- from devicefactory/bash/preamble.bash: bash only; the files below are named from the project folder
if [ -z "$BASH_VERSION" ]; then echo "$0: run this script with bash" >&2; exit 2; fi
cd -- "$(dirname -- "$0")/.." || exit 1
