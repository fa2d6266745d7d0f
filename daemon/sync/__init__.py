"""git -> store: what each commit changes (plan.py, pure), recording it (syncer.py), waking up
on pushes (watch.py). Never imports daemon.serving."""
