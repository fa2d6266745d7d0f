"""store -> Ray Serve: LLMConfig building (llm_config.py) and the reconcile decision (plan.py),
both pure; the dashboard client (client.py) and the reconciler shell (reconciler.py). Never
imports daemon.sync; never imports ray (the code that runs inside Ray is daemon/replicas/; of it only its Ray-free names module is imported here)."""
