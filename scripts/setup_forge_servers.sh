#!/usr/bin/env bash
# Debian's lighttpd (in front of git's own git-http-backend) and openssh-server (sshd) for the
# remote-repo tests, which run them as throwaway servers on 127.0.0.1 (tests/forge_servers.py).
# Their services are not started by the install (policy-rc.d); on a systemd machine the
# packages still enable their units for the next boot (systemctl disable lighttpd ssh if
# unwanted). Does nothing when both are there.
set -euo pipefail
if [ -x /usr/sbin/lighttpd ] && [ -x /usr/sbin/sshd ] && [ -x /usr/lib/git-core/git-http-backend ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup_forge_servers.sh: install lighttpd and openssh-server with your package manager" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
GUARD=/usr/sbin/policy-rc.d
if [ ! -e "$GUARD" ]; then  # Debian's way to keep a package's service from starting at install
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$GUARD" >/dev/null
  $SUDO chmod +x "$GUARD"
  trap '$SUDO rm -f "$GUARD"' EXIT
fi
install() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends lighttpd openssh-server >/dev/null
}
# The package lists are refreshed only when the install cannot do without (saves ~45 s here).
install 2>/dev/null || { $SUDO apt-get update -qq && install; }
echo "setup_forge_servers.sh: lighttpd and sshd installed (the tests start their own, on 127.0.0.1)"
