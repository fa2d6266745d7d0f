# Make a virtual environment usable, whatever a failed or foreign earlier run left (sourced).
#
#   ensure_venv DIR MIN_PYTHON    # e.g. ensure_venv .venv-serve 3.11
#
# A dangling symlink (a clone of a tree that tracked one, a deleted target) is removed; a
# half-made venv (no working interpreter) is removed and made again; anything at DIR that is
# not a venv is left alone with an error that says so. ${PYTHON:-python3} makes new venvs.

ensure_venv() {
  local dir=$1 min=$2 python=${PYTHON:-python3}
  if [ -L "$dir" ] && [ ! -e "$dir" ]; then
    echo "$dir is a dangling symlink (to $(readlink "$dir")): removing it"
    rm -f "$dir"
  fi
  if [ -e "$dir" ] && ! "$dir/bin/python" -c 'import sys' >/dev/null 2>&1; then
    if [ -f "$dir/pyvenv.cfg" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
      echo "$dir is a half-made virtual environment (no working bin/python): making it again"
      rm -rf "$dir"
    else
      echo "$dir exists and is not a virtual environment: move it away or set another path" >&2
      return 3
    fi
  fi
  if [ ! -e "$dir" ]; then
    if ! "$python" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$min'.split('.'))))" 2>/dev/null; then
      echo "$dir needs Python $min or newer; $python is $("$python" --version 2>&1 || echo missing)." \
        "Install Python $min+ and run again with PYTHON=/path/to/python3.x" >&2
      return 3
    fi
    "$python" -m venv "$dir"
  fi
}
