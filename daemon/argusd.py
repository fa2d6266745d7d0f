"""argusd: records every commit of the GitOps repo in the store (sync loop) and brings Ray Serve to
the store (reconcile loop), as the one active daemon of its cluster (the lease)."""
from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sqlite3
import sys
import threading
import time
from typing import TYPE_CHECKING, Optional

import typer

from daemon.config import Config, Reader, gitops_mirror, load_config
from daemon.core.forge import backoff_seconds, fetch_wait_seconds
from daemon.errors import ArgusError, ClusterError, ConfigError, GitError, StoreError
from daemon.gitrepo import GitRepo
from daemon.remote import FetchState, Mirror, fetch_state_path, now_iso, prepare_signatures, write_fetch_state
from daemon.serving.lease import Role, daemon_name, stable_instance
from daemon.serving.reconciler import ReconcileOutcome, Reconciler
from daemon.serving.client import ServeClient
from daemon.core.spec import SpecPolicy
from daemon.store import Store, WriterLock, daemon_instance, remember_daemon_instance, write_failed
from daemon.sync.syncer import SyncOutcome, Syncer
from daemon.sync.watch import RefWatcher

if TYPE_CHECKING:
    from daemon.metrics import Metrics

log = logging.getLogger("argus.daemon")

EXIT_ENVIRONMENT = 3
STOP_GRACE_SECONDS = 3.0
# A model that serves but is not routed yet (ReconcileResult.recheck_soon) is looked at again this soon,
# at most this many times in a row (then the poll interval again: a front end that never takes
# the route is not polled fast forever).
ROUTE_RECHECK_SECONDS = 0.5
ROUTE_RECHECKS = 10


def reconcile_wait(poll_seconds: float, recheck_soon: bool, soon_before: int) -> tuple[float, int]:
    """How long the reconcile loop waits after a tick, and how many ticks in a row have now asked
    to look again soon (`soon_before`: how many had, before this one)."""
    in_a_row = soon_before + 1 if recheck_soon else 0
    if 0 < in_a_row <= ROUTE_RECHECKS:
        return min(ROUTE_RECHECK_SECONDS, poll_seconds), in_a_row
    return poll_seconds, in_a_row


class Daemon:
    """Two loops. Sync (this thread) records each commit as it lands; reconcile (its own
    thread, its own store connection) brings Serve to the store. So recording a push never
    waits for a Serve call, and a slow or hanging dashboard only delays reconcile. The store
    is opened once per loop; the repo is (re)opened as it comes and goes."""

    def __init__(self, config: Config, store: Store, serve_client: ServeClient | None, watch: bool = True,
                 metrics: Metrics | None = None, alive_file: str | None = None):
        """`serve_client`: the way into Ray Serve (None: record commits only, --sync-only).
        `alive_file`: touched after each reconcile tick that reached Serve (the store's writer
        lock file), so `argusctl status` can tell when the lease this daemon held has expired."""
        self.config = config
        self.metrics = metrics
        self.watch = watch
        self.client = serve_client
        self.alive_file = alive_file
        # The store's instance in the lease: a restarted argusd takes its lease back at once, also
        # over a store rebuilt or lost with its directory (the instance is its host's, its store
        # path's and its GitOps repo's).
        self._host, self._state_db = socket.gethostname(), os.path.realpath(config.state.db)
        self._instance = daemon_instance(store, self._host, self._state_db,
                                         stable_instance(self._host, self._state_db, config.gitops.location.value))
        self.identity = daemon_name(self._instance, secrets.token_hex(4), self._host, self._state_db)
        self.reconciler = (Reconciler(store, serve_client, config, identity=self.identity)
                           if serve_client is not None else None)
        self.store = store
        self.policy = SpecPolicy.from_config(config)
        self.wake = threading.Event()            # a ref changed (watcher), fetch now (webhook, API write), or stop
        self.reconcile_wake = threading.Event()  # sync recorded something, or stop
        self.reconcile_soon = False              # the last tick asked to look again soon (ReconcileResult.recheck_soon)
        self.stopping = threading.Event()
        self.repo: GitRepo | None = None
        self.watcher: RefWatcher | None = None
        self._errors: dict[str, str | None] = {}
        # A remote gitops.repo: sync reads argusd's mirror of it, fetched before each pass.
        self.mirror = Mirror(config) if config.gitops.location.remote else None
        self.fetch_state = FetchState(config.gitops.repo)
        self._next_fetch = 0.0       # monotonic time before which no fetch is tried (backoff)
        self._last_fetch_started: float | None = None  # monotonic; spaces woken fetches (MIN_FETCH_INTERVAL_S)
        self._last_good_fetch: float | None = None
        self._started = time.time()
        # gitops.require_signed: git checks each commit's signature against the config's keys.
        self.signatures = prepare_signatures(config, fetch_state_path(config).parent / "signers")

    def health(self) -> dict:
        """What argusd itself knows of its loops (the API's admin status shows it)."""
        return {"pid": os.getpid(), "serving": self.client is not None,
                "repository_error": self._errors.get("sync"), "serve_error": self._errors.get("serve"),
                **({"fetch": dict(self.fetch_state.__dict__)} if self.mirror is not None else {})}

    def seconds_since_good_fetch(self) -> float:
        """Since the last fetch that worked (since start while none has): the /metrics gauge."""
        return time.time() - (self._last_good_fetch or self._started)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.reconcile_wake.set()

    def _ensure_repo(self) -> GitRepo:
        if self.repo is None:
            self.repo = GitRepo(gitops_mirror(self.config), signatures=self.signatures)
        if self.watch and self.mirror is None and (self.watcher is None or not self.watcher.alive):
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
            log.info("%s works again", {"sync": "sync", "fetch": "fetching the remote repo"}.get(kind, "reconcile (Ray Serve)"))
        self._errors[kind] = message

    def tick(self) -> bool:
        """One level-triggered pass in this thread (--once, tests): sync git into the store,
        then reconcile Serve with it. Returns False when a step failed (and was reported)."""
        self._reopen_if_replaced()
        self._fetch()
        ok = self._sync()
        if self.reconciler is not None:
            ok = self._reconcile(self.reconciler) and ok
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
        # The new store is told this daemon's instance (an argus before instances were per host,
        # path and repo made a random one), so a restart still knows its lease. Here only: the
        # reconcile thread's own reopen of the same file needs nothing more.
        try:
            remember_daemon_instance(self.store, self._instance, self._host, self._state_db)
        except sqlite3.Error as exc:  # said like any failed write; sync's own writes then retry
            self._report("sync", str(write_failed(self.store.path, exc)))
        if self.reconciler is not None:
            self.reconciler = Reconciler(self.store, self.reconciler.client, self.config, identity=self.identity)

    def _fetch(self) -> None:
        """Bring the mirror up to the remote, unless a failed fetch's backoff runs. A failure
        changes nothing recorded: sync goes on from the mirror, and every model keeps serving."""
        if self.mirror is None or time.monotonic() < self._next_fetch:
            return
        self._last_fetch_started = time.monotonic()
        state = self.fetch_state
        state.last_attempt = now_iso()
        try:
            self.mirror.fetch()
        except GitError as exc:
            state.failures += 1
            state.error = str(exc)
            state.next_attempt_in = backoff_seconds(state.failures, self.config.gitops.poll_seconds)
            self._next_fetch = time.monotonic() + state.next_attempt_in
            message = f"{exc} (everything recorded keeps serving; next try in {state.next_attempt_in:g} s)"
            if self._errors.get("fetch") is None or state.failures in (2, 5) or state.failures % 20 == 0:
                log.error("%s", message)
            self._errors["fetch"] = message
        except Exception:  # a bug: never stop syncing for it
            log.exception("unexpected error fetching the remote repo (please report it); retrying")
            state.failures += 1
            state.error = "unexpected error while fetching (argusd's log has it; please report it)"
            self._next_fetch = time.monotonic() + backoff_seconds(state.failures, self.config.gitops.poll_seconds)
        else:
            if self._errors.get("fetch") is not None:
                log.info("fetching the remote repo works again")
            self._errors["fetch"] = None
            state.failures, state.error, state.next_attempt_in = 0, None, 0.0
            state.last_success = state.last_attempt
            self._last_good_fetch = time.time()
            self._next_fetch = 0.0
        write_fetch_state(fetch_state_path(self.config), state)

    def _sync(self) -> bool:
        started = time.perf_counter()
        try:
            repo = self._ensure_repo()
            syncer = Syncer(self.store, repo, self.config.gitops.branch, self.policy, owners=self.config.owners())
            result = syncer.sync_once()
        except (GitError, StoreError, sqlite3.Error) as exc:
            self._report("sync", str(write_failed(self.store.path, exc) if isinstance(exc, sqlite3.Error) else exc))
            self._drop_repo()
            self._count_sync("error", 0, started)
            return False
        except Exception:  # a bug: keep serving the other models, and say so loudly
            log.exception("unexpected error in the sync loop (please report it); retrying")
            self._drop_repo()
            self._count_sync("error", 0, started)
            return False
        self._report("sync", None)
        self._count_sync(str(result.outcome), result.commits, started)
        if result.outcome not in (SyncOutcome.NOOP, SyncOutcome.EMPTY):
            self.reconcile_wake.set()
            log.info("sync %s: %d commit(s), %d change(s), head %s", result.outcome, result.commits,
                     result.changes, (result.head or "-")[:12])
        return True

    def _reconcile(self, reconciler: Reconciler) -> bool:
        started = time.perf_counter()
        try:
            result = reconciler.tick()
        except ClusterError as exc:
            self._report("serve", str(exc))
            self._count_reconcile("error", started, reachable=False)
            return False
        except (StoreError, sqlite3.Error) as exc:
            self._report("serve", str(exc))
            self._count_reconcile("error", started, reachable=True)
            return False
        except Exception:
            log.exception("unexpected error in the reconcile loop (please report it); retrying")
            self._count_reconcile("error", started, reachable=True)
            return False
        self._report("serve", None)
        self.reconcile_soon = result.recheck_soon
        self._count_reconcile(str(result.outcome), started, reachable=True, active=reconciler.role == Role.ACTIVE)
        if self.metrics is not None:
            self.metrics.replicas_seen(reconciler.replicas_seen)
        self._touch_alive()
        return result.outcome != ReconcileOutcome.APPLY_FAILED

    def _touch_alive(self) -> None:
        """Mark a tick that reached Serve: an active daemon renews its lease within such ticks, so
        its lease expires at the latest a lease time after the last mark."""
        if self.alive_file is not None:
            try:
                os.utime(self.alive_file)
            except OSError as exc:  # a hint for status, never a reason to stop reconciling
                log.debug("cannot touch %s: %s", self.alive_file, exc)

    def _count_sync(self, outcome: str, commits: int, started: float) -> None:
        if self.metrics is not None:
            self.metrics.synced(outcome, commits, time.perf_counter() - started)

    def _count_reconcile(self, outcome: str, started: float, reachable: bool, active: bool = False) -> None:
        if self.metrics is not None:
            self.metrics.reconciled(outcome, time.perf_counter() - started, reachable, active)

    def run(self) -> None:
        worker = None
        if self.client is not None:
            worker = threading.Thread(target=self._reconcile_loop, name="argusd-reconcile", daemon=True)
            worker.start()
        while not self.stopping.is_set():
            self.wake.clear()
            self._reopen_if_replaced()
            # Fetches are spaced (webhook replays); wakes arriving meanwhile stay set: one fetch after this one.
            if self.mirror is not None and self.stopping.wait(fetch_wait_seconds(time.monotonic(),
                                                                                 self._last_fetch_started)):
                break
            self._fetch()
            self._sync()
            self.wake.wait(timeout=self.config.gitops.poll_seconds)
        if worker is not None:
            # A tick that is writing finishes in milliseconds; one stuck in a Serve call is left
            # behind (a daemon thread): nothing of it is recorded, and the next start plans again.
            worker.join(timeout=STOP_GRACE_SECONDS)
        self._drop_repo()

    def _reconcile_loop(self) -> None:
        """Reconcile every poll interval and whenever sync recorded something. SQLite
        connections stay in the thread that made them: this loop has its own."""
        store: Store | None = None
        reconciler: Reconciler | None = None
        soon_in_a_row = 0
        try:
            while not self.stopping.is_set():
                self.reconcile_wake.clear()
                self.reconcile_soon = False
                try:
                    if store is None or store.replaced():  # see _reopen_if_replaced
                        if store is not None:
                            store.close()
                        store = None
                        store = Store.open(self.store.path)
                        reconciler = Reconciler(store, self.client, self.config, identity=self.identity)
                except StoreError as exc:
                    self._report("serve", str(exc))
                else:
                    self._reconcile(reconciler)
                wait, soon_in_a_row = reconcile_wait(self.config.gitops.poll_seconds, self.reconcile_soon, soon_in_a_row)
                self.reconcile_wake.wait(timeout=wait)
        except Exception:
            log.exception("the reconcile loop stopped (please report it); sync goes on")
        finally:
            if store is not None:
                store.close()


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
        cfg = load_config(config, reader=Reader.ARGUSD)
        lock = WriterLock(cfg.state.db).acquire()
        store = Store.open(cfg.state.db)
    except (ConfigError, StoreError) as exc:
        typer.echo(f"argusd: error: {exc}", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT)
    client = None if sync_only else ServeClient(cfg.serving.serve.dashboard_url)
    metrics = None
    listen = os.environ.get("ARGUS_METRICS_LISTEN") or cfg.metrics.listen
    if listen and not once:
        from daemon.metrics import Metrics  # only when asked for

        metrics = Metrics(cfg.state.db)
        try:
            metrics.serve(listen)
            log.info("metrics on http://%s/metrics", listen)
        except (OSError, ValueError) as exc:  # the side door failing never stops sync
            log.error("cannot serve metrics on %s (%s); going on without them", listen, exc)
    try:
        daemon = Daemon(cfg, store, client, watch=not once, metrics=metrics, alive_file=lock.path)
    except GitError as exc:  # e.g. a signing key that cannot be used: one line, no traceback
        typer.echo(f"argusd: error: {exc}", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT)
    if metrics is not None and daemon.mirror is not None:
        metrics.watch_fetch(daemon.seconds_since_good_fetch)
    api = None
    traffic = None
    api_listen = os.environ.get("ARGUS_API_LISTEN") or cfg.api.listen
    if api_listen and not once:
        try:
            from daemon.api.server import ApiServer  # only when asked for

            if client is not None:  # the model page's chart: Ray Serve's own counts
                from daemon.traffic import TrafficRecorder, TrafficSampler

                traffic = TrafficRecorder(TrafficSampler(cfg.serving.serve.dashboard_url), cfg.api.traffic_seconds)
            api = ApiServer(cfg, api_listen, wake=daemon.wake.set, serve_client=client, health=daemon.health,
                            traffic=traffic).start()
            if traffic is not None:
                traffic.start()
            log.info("API and web UI on http://%s/ui (tokens: argusctl token create)", api_listen)
        except (OSError, ValueError, ArgusError) as exc:  # the web part failing never stops sync
            log.error("cannot serve the API on %s (%s); going on without it", api_listen, exc)
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
    if traffic is not None:
        traffic.stop()
    if api is not None:
        api.stop()
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
