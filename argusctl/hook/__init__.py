"""What runs inside `git push` on the server: the pre-receive hook.

cli.py     `argusctl hook install` and `argusctl hook pre-receive` (Typer), what git runs
checks.py  the hook's checks, without Typer: the same judge as `argusctl lint` and argusd
           (daemon/core/verdict.py), ownership of models.d/<user>/, the quota, signatures
"""
