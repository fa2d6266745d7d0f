"""Real git servers on 127.0.0.1 for the remote-repo tests: git's own `git-http-backend` behind
lighttpd (smart HTTP, basic auth with a token as the password), and Debian's OpenSSH sshd on a
spare port with its own host key and authorized_keys. Both run as the test's user, under a
temp dir, and stop with the test. scripts/setup_forge_servers.sh installs the packages."""
from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

from helpers import free_port

LIGHTTPD = "/usr/sbin/lighttpd"
SSHD = "/usr/sbin/sshd"
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def missing_servers() -> str | None:
    """What is not installed (a reason to fail with the fix), or None."""
    for path in (LIGHTTPD, SSHD, HTTP_BACKEND):
        if not os.path.exists(path):
            return f"{path} is missing: run scripts/setup_forge_servers.sh (Debian's lighttpd and openssh-server)"
    return None


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    """Until the server listens; a server that does not is stopped before the error is raised."""
    try:
        _wait_listening(port, proc, log, timeout)
    except BaseException:
        _stop(proc)
        raise


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {log.read_text() if log.exists() else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text() if log.exists() else ''}")


def bare_repo(path: Path, branch: str = "main") -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "-b", branch, str(path)], check=True)
    return path


class HttpGitServer:
    """lighttpd serving every bare repo under `root` at http://127.0.0.1:PORT/git/<name>.git,
    read and write for user `user` with password `token` (HTTP basic auth over 127.0.0.1)."""

    def __init__(self, base: Path, user: str = "argus", token: str = "tok-" + "s3cr3t-9f8e7d6c"):
        self.base = base
        self.root = base / "repos"
        self.root.mkdir(parents=True, exist_ok=True)
        self.user, self.token = user, token
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/git/{name}"

    def start(self) -> "HttpGitServer":
        users = self.base / "lighttpd.users"
        users.write_text(f"{self.user}:{self.token}\n")
        conf = self.base / "lighttpd.conf"
        self.log = self.base / "lighttpd.log"
        conf.write_text(f'''
server.modules = ("mod_alias", "mod_setenv", "mod_auth", "mod_authn_file", "mod_cgi")
server.document-root = "{self.root}"
server.bind = "127.0.0.1"
server.port = {self.port}
server.errorlog = "{self.log}"
server.max-request-size = 65536
alias.url = ("/git" => "{HTTP_BACKEND}")
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.set-environment = ("GIT_PROJECT_ROOT" => "{self.root}", "GIT_HTTP_EXPORT_ALL" => "1")
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
}}
''')
        self.proc = subprocess.Popen([LIGHTTPD, "-D", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"), start_new_session=True)
        _wait_port(self.port, self.proc, self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)

    def pause(self) -> None:
        """Freeze the server (accepts connections, answers nothing): a hanging forge."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


class SshGitServer:
    """sshd on 127.0.0.1:PORT letting the test's own user in with one throwaway key; repos are
    reached as ssh://USER@127.0.0.1:PORT/<absolute path>."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.user = getpass.getuser()
        self.proc: subprocess.Popen | None = None

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo}"

    def start(self) -> "SshGitServer":
        b = self.base
        b.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(b / name)], check=True)
        (b / "authorized_keys").write_text((b / "client_key.pub").read_text())
        host_pub = (b / "host_key.pub").read_text().split()
        self.known_hosts = b / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.client_key = b / "client_key"
        os.chmod(self.client_key, 0o600)
        conf = b / "sshd_config"
        self.log = b / "sshd.log"
        conf.write_text(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {b / 'host_key'}
AuthorizedKeysFile {b / 'authorized_keys'}
PidFile {b / 'sshd.pid'}
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {self.user}
""")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # root's sshd wants its privilege-separation dir
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"), start_new_session=True)
        _wait_port(self.port, self.proc, self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def copy_repo(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@contextlib.contextmanager
def both_servers(base: Path) -> Iterator[tuple["HttpGitServer", "SshGitServer"]]:
    """The smart-HTTP and the SSH forge under `base`, both stopped after (also when the second
    fails to start). CI installs them: a missing server is a failure, not a skip."""
    missing = missing_servers()
    assert missing is None, missing
    http = HttpGitServer(base / "http").start()
    try:
        ssh = SshGitServer(base / "ssh").start()
    except BaseException:
        http.stop()
        raise
    try:
        yield http, ssh
    finally:
        http.stop()
        ssh.stop()
