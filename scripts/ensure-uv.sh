#!/usr/bin/env sh
# Print the path of a working `uv`, installing it from PyPI for this user if it is missing.
# Works on a fresh Debian machine with Python 3.11 (where pip may refuse system-wide installs).
set -eu
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
if [ -x "$HOME/.local/bin/uv" ]; then echo "$HOME/.local/bin/uv"; exit 0; fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >&2
  else
    echo "uv is not installed and pip is missing: run 'sudo apt-get install python3-pip' first" >&2
    exit 1
  fi
fi
python3 -m pip install --quiet --user uv >&2 2>/dev/null \
  || python3 -m pip install --quiet --user --break-system-packages uv >&2
if command -v uv >/dev/null 2>&1; then command -v uv; else echo "$HOME/.local/bin/uv"; fi
