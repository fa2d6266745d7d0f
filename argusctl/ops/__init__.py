"""The CLI's operations, without typer: lint, the write path (init/apply/scale/suspend/delete)
and doctor. The typer commands in argusctl/ call these and render; the pre-receive hook's
checks are in argusctl/hook/."""
