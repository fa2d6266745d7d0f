"""argus engine: spec core, state store, git sync, reconcile and serve backends.

The pure core (spec, config building, reconcile planning) imports no git, sqlite3,
ray or HTTP; the shells around it do. `daemon` never imports `argusctl`.
"""
