"""store -> Ray Serve, inside argusd's reconcile loop. Pure: what one model's deployment runs
(llm_config.py), the Serve config as typed objects and its JSON (serve_config.py), what Serve
reports (observe.py), and the decision (plan.py, with admit.py and judge.py; desired.py holds
what they read and decide per model). Shells: the dashboard client (client.py) and the
reconciler (reconciler.py). Never imports daemon.sync; never imports ray (the code that runs
inside Ray is daemon/replicas/; of it only its Ray-free names module is imported here)."""
