"""The CLI's operations, without typer: lint, the write path (init/apply/scale/delete), the
pre-receive hook and doctor. The typer commands in argusctl/ call these and render."""
