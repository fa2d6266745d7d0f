"""argusd: the sync daemon. Watches the GitOps repo and records every commit in the store."""
from __future__ import annotations

import logging
import signal
import sqlite3
import sys
import threading
from typing import Optional

import typer

from daemon.config import Config, load_config
from daemon.errors import ArgusError, ClusterError, ConfigError, GitError, StoreError
from daemon.gitrepo import GitRepo
from daemon.serving.reconciler import ReconcileOutcome, Reconciler
from daemon.serving.client import ServeClient
from daemon.core.spec import SpecPolicy
from daemon.store import Store, WriterLock
from daemon.sync.syncer import SyncOutcome, Syncer
from daemon.sync.watch import RefWatcher

log = logging.getLogger("argus.daemon")

EXIT_ENVIRONMENT = 3


class Daemon:
    """One sync loop. The store is opened once; the repo is (re)opened as it comes and goes."""

    def __init__(self, config: Config, store: Store, serve_client: ServeClient | None, watch: bool = True):
        """`serve_client`: the way into Ray Serve (None: record commits only, --sync-only)."""
        self.config = config
        self.watch = watch
        self.reconciler = Reconciler(store, serve_client, config) if serve_client is not None else None
        self.store = store
        self.policy = SpecPolicy.from_config(config)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.repo: GitRepo | None = None
        self.watcher: RefWatcher | None = None
        self._errors: dict[str, str | None] = {}

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def _ensure_repo(self) -> GitRepo:
        if self.repo is None:
            self.repo = GitRepo(self.config.gitops.repo)
        if self.watch and (self.watcher is None or not self.watcher.alive):
            if self.watcher is not None:
                self.watcher.stop()
            self.watcher = RefWatcher(self.repo.git_dir, self.wake)
            self.watcher.start()
            log.info("watching %s (%s)", self.repo.git_dir, self.watcher.mode)
        return self.repo

    def _drop_repo(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.repo is not None:
            self.repo.close()
            self.repo = None

    def _report(self, kind: str, message: str | None) -> None:
        """Log a persisting problem once, and its end once, not on every tick."""
        previous = self._errors.get(kind)
        if message is not None and message != previous:
            log.error("%s (retrying every %ss)", message, self.config.gitops.poll_seconds)
        elif message is None and previous is not None:
            log.info("%s is reachable again", "repository" if kind == "sync" else "Ray Serve")
        self._errors[kind] = message

    def tick(self) -> bool:
        """One level-triggered pass: sync git into the store, then reconcile Serve with it.
        Returns False when a step failed (and was reported)."""
        self._reopen_if_replaced()
        ok = self._sync()
        if self.reconciler is not None:
            ok = self._reconcile() and ok
        return ok

    def _reopen_if_replaced(self) -> None:
        """A store deleted (or swapped) under a running argusd: writing on would go to a file
        nobody can read. Open the path again; a new store is rebuilt from git by this tick."""
        if not self.store.replaced():
            return
        log.error("the state store %s was deleted or replaced while argusd ran; opening it again "
                  "(a new store is rebuilt from the git history)", self.store.path)
        self.store.close()
        self.store = Store.open(self.store.path)
        if self.reconciler is not None:
            self.reconciler = Reconciler(self.store, self.reconciler.client, self.config)

    def _sync(self) -> bool:
        try:
            repo = self._ensure_repo()
            syncer = Syncer(self.store, repo, self.config.gitops.branch, self.policy, owners=self.config.owners())
            result = syncer.sync_once()
        except (GitError, StoreError, sqlite3.Error) as exc:
            self._report("sync", str(exc))
            self._drop_repo()
            return False
        except Exception:  # a bug: keep serving the other models, and say so loudly
            log.exception("unexpected error in the sync loop (please report it); retrying")
            self._drop_repo()
            return False
        self._report("sync", None)
        if result.outcome not in (SyncOutcome.NOOP, SyncOutcome.EMPTY):
            log.info("sync %s: %d commit(s), %d change(s), head %s", result.outcome, result.commits,
                     result.changes, (result.head or "-")[:12])
        return True

    def _reconcile(self) -> bool:
        try:
            result = self.reconciler.tick()
        except (ClusterError, StoreError, sqlite3.Error) as exc:
            self._report("serve", str(exc))
            return False
        except Exception:
            log.exception("unexpected error in the reconcile loop (please report it); retrying")
            return False
        self._report("serve", None)
        return result.outcome != ReconcileOutcome.APPLY_FAILED

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            self.tick()
            self.wake.wait(timeout=self.config.gitops.poll_seconds)
        self._drop_repo()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.command()
def main(
    config: Optional[str] = typer.Option(None, "--config", "-c", envvar="ARGUS_CONFIG",
                                         help="Platform config file (default: configs/local.yaml)."),
    once: bool = typer.Option(False, "--once", help="One pass (sync, then reconcile) and exit; exit 3 if it failed."),
    sync_only: bool = typer.Option(False, "--sync-only", help="Record commits in the store; do not touch Serve."),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Watch the GitOps repo and record every commit in the state store."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s argusd %(levelname)s %(message)s")
    try:
        cfg = load_config(config)
        lock = WriterLock(cfg.state.db).acquire()
        store = Store.open(cfg.state.db)
    except (ConfigError, StoreError) as exc:
        typer.echo(f"argusd: error: {exc}", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT)
    client = None if sync_only else ServeClient(cfg.serving.serve.dashboard_url)
    daemon = Daemon(cfg, store, client, watch=not once)
    if once:
        ok = daemon.tick()
        daemon._drop_repo()
        daemon.store.close()
        lock.release()
        raise typer.Exit(0 if ok else EXIT_ENVIRONMENT)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop())
    log.info("argusd started: repo %s branch %s, store %s", cfg.gitops.repo, cfg.gitops.branch, cfg.state.db)
    daemon.run()
    daemon.store.close()
    lock.release()
    log.info("argusd stopped")


def run() -> None:
    try:
        app()
    except ArgusError as exc:
        print(f"argusd: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_ENVIRONMENT)


if __name__ == "__main__":
    run()
