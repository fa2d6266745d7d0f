"""Code that runs inside Ray replicas: the model server (llm_server; model_server builds its
app), the one OpenAI front end (ingress; frontend builds its app) and the lease's holder
(lease). Serve loads them through the import paths argusd writes into its config
(names.BUILD_*); argusd and argusctl never import them, so they may import Ray; Ray's private
names they need are in ray_private.py (and, for the apps' builds, which must not import vLLM,
in ray_build.py). They import nothing of argus
but each other and the standard-library-only daemon.core.replica_contract.

This package's own module and `names` (the names argusd and the replicas share) are Ray-free:
argusd imports `daemon.replicas.names` and nothing else of this package.
"""
