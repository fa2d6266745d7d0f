"""Wake the daemon when the tracked repo's refs change (watchdog), polling as the fallback."""
from __future__ import annotations

import logging
import os
import threading

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

log = logging.getLogger("argus.watch")


_WRITES = {"created", "modified", "moved", "deleted", "closed"}  # not "opened", "closed_no_write"


class _RefHandler(FileSystemEventHandler):
    def __init__(self, wake: threading.Event):
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Only writes: git itself opens and reads HEAD and refs on every sync, and waking on
        # those reads would spin the loop.
        if event.event_type not in _WRITES:
            return
        for path in (event.src_path, getattr(event, "dest_path", "") or ""):
            path = os.fsdecode(path)
            name = os.path.basename(path)
            if "/refs/" in path or name in ("packed-refs", "HEAD") or path.endswith("/refs"):
                self.wake.set()
                return


class RefWatcher:
    """Sets `wake` whenever a ref of the git dir changes. Falls back to polling the files
    when inotify cannot be used (no watches left, network file systems)."""

    def __init__(self, git_dir: str, wake: threading.Event):
        self.git_dir = git_dir
        self.wake = wake
        self.observer = None
        self.mode = "off"

    def start(self) -> None:
        handler = _RefHandler(self.wake)
        for factory, mode in ((Observer, "inotify"), (PollingObserver, "polling")):
            observer = factory()
            try:
                observer.schedule(handler, os.path.join(self.git_dir, "refs"), recursive=True)
                observer.schedule(handler, self.git_dir, recursive=False)
                observer.start()
            except Exception as exc:  # e.g. OSError: inotify watch limit reached
                log.warning("cannot watch %s with %s (%s)", self.git_dir, mode, exc)
                continue
            self.observer, self.mode = observer, mode
            return
        self.mode = "off"

    @property
    def alive(self) -> bool:
        return self.observer is not None and self.observer.is_alive()

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None
