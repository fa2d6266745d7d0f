"""argus's engine and daemon. Where each piece runs shows in the layout
(tests/unit/test_import_rules.py enforces it):

    core/       pure rules, data in and data out (no file system, sqlite3, subprocess, git,
                ray or HTTP): the one verdict on spec files (verdict), specs and their YAML
                (spec, yamldoc, validation, specedit, engine_policy), the repo's layout,
                ownership and quotas, folders and adapters as judged from facts a shell read,
                the records and state words (records, states), describe's wording, forge and
                traffic rules, and what argusd and the replicas share (replica_contract).
                Used by argusd, argusctl, the hook and the API (its own docstring lists each).
    sync/       git -> store, argusd's sync loop: what a commit changes (plan, pure), recording
                it (syncer), the id ledger (ids), waking on pushes (watch).
    serving/    store -> Ray Serve, argusd's reconcile loop: the typed Serve config and status
                (serve_config, observe), LLMConfig building, admission, the per-model judge and
                the reconcile decision (plan), all pure; the dashboard client, the lease, the
                probes, the reaper and the reconciler (shells).
    api/        argusd's management HTTP API and web UI (FastAPI routers, one per resource).
    argusd.py   the daemon's wiring and its two loops
    verdicts.py asking the judge: reads the folders the specs name, the step lint, the hook,
                sync and the API's writes share
    folders.py  the shell that reads a model or adapter folder into facts for core/folders
    served_paths.py  the replicas' path rule with its roots read from the file system
    store.py    the SQLite state store        gitrepo.py  reading the GitOps repo
    gitwrite.py the write path (CLI and API)  remote.py   a GitOps repo on a forge
    config.py   the platform config           errors.py   domain errors, each by whose fault
    metrics.py  argusd's Prometheus metrics   traffic.py  reading Serve's per-model metrics
    replicas/   runs INSIDE Ray replicas: the model server, the front end, the lease's holder
                (their builders' import paths are in every deployed Serve config); the names
                argusd shares with them in replicas/names.py (Ray-free, the only part argusd
                imports); Ray's private names only in replicas/ray_private.py

sync/ and serving/ never import each other; only replicas/ imports ray; nothing here
imports argusctl (whose ops/ package holds lint, the write path and doctor, and hook/ the
pre-receive hook).
"""
