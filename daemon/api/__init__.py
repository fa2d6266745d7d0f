"""argusd's second door onto the GitOps repo: the management HTTP API and the web UI.

- `tokens`: users' API tokens (stored as hashes) and the git identity each writes with.
- `service`: what each route does, as plain calls that raise daemon.errors; every write is a
  commit by the caller through daemon/gitwrite.py (the same path as `argusctl apply`).
- `http`: the FastAPI app that maps requests onto the service and its errors onto status
  codes; it also serves the UI pages in `static/`.
"""
