#!/usr/bin/env bash
# Debian's chromium and chromium-driver for the web UI's browser test (no browser download
# from the internet: the distribution's packages). Does nothing when both are there.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  echo "setup_browser.sh: $(chromium --version 2>/dev/null | head -1) and its chromedriver are installed"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup_browser.sh: install chromium and its chromedriver with your package manager" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core
echo "setup_browser.sh: $(chromium --version 2>/dev/null | head -1) and its chromedriver are installed"
