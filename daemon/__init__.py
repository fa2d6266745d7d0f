"""argus's engine and daemon. Where each piece runs shows in the layout
(tests/unit/test_import_rules.py enforces it):

    core/       pure rules: YAML loading (yamldoc), spec rules and resolution (spec,
                validation, engine_policy), repo layout and ownership (layout, ownership).
                No sqlite3, subprocess, git, ray or HTTP. Used by argusd, argusctl and the hook.
    sync/       git -> store, inside argusd: what a commit changes (plan, pure), recording it
                (syncer), waking on pushes (watch).
    serving/    store -> Ray Serve, inside argusd: LLMConfig building (llm_config) and the
                reconcile decision (plan), both pure; the dashboard client and the reconciler.
    store.py    the SQLite state store        gitrepo.py  reading the GitOps repo
    config.py   the platform config           errors.py   domain errors (the CLI maps them)
    argusd.py   the daemon's wiring and loop
    replicas/   runs INSIDE Ray replicas: the model server, the front end, the lease's holder
                (their builders' import paths are in every deployed Serve config); the names
                argusd shares with them in replicas/names.py (Ray-free, the only part argusd
                imports); Ray's private names only in replicas/ray_private.py

sync/ and serving/ never import each other; only replicas/ imports ray; nothing here
imports argusctl (whose ops/ package holds lint, the write path, the hook and doctor).
"""
