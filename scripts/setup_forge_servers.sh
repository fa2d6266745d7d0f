#!/usr/bin/env bash
# Debian's lighttpd (in front of git's own git-http-backend) and openssh-server (sshd) for the
# remote-repo tests, which run them as throwaway servers on 127.0.0.1 (tests/forge_servers.py).
# Neither is started or enabled here. Does nothing when both are there.
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
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends lighttpd openssh-server >/dev/null
echo "setup_forge_servers.sh: lighttpd and sshd installed (the tests start their own, on 127.0.0.1)"
