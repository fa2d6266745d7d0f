"""argusctl: the command line of argus. Imports the engine from `daemon`; never ray/vllm/torch
at import time, so commands that do not talk to the cluster start fast.

    main.py, lint.py, status.py, write.py, diff.py, doctor.py, token.py
              the Typer commands: parse arguments, call an operation, render its result
    ops/      the operations, without Typer: lint, the write path (init/apply/scale/suspend/
              delete), doctor
    hook/     what runs inside `git push` on the server: the pre-receive hook (its Typer
              commands in hook/cli.py, its checks in hook/checks.py)
"""
