"""argusd's second door onto the GitOps repo: the management HTTP API and the web UI.

- `tokens`: users' API tokens (stored as hashes) and the git identity each writes with.
- `service`: what each route does, as plain calls that raise daemon.errors; every write is a
  commit by the caller through daemon/gitwrite.py (the same path as `argusctl apply`).
- `http`: the FastAPI app that maps requests onto the service and its errors onto status
  codes, put together from one router per resource (`routes_models`, `routes_admin`,
  `routes_account`, `routes_ui`, which serves the UI pages in `static/`) and what they share
  (`dependencies`: who a request acts as, the cross-site rule, the write lanes).
- `server`: runs the app inside argusd.
"""
