# One image for every Ray node of a GPU cluster (head and workers) that argus serves on.
# argus deploys Serve apps whose code is `daemon.frontend` and Ray Serve LLM + vLLM; Serve
# builds them in a task that can land on any node, so every node needs the same Ray, the
# same vLLM and argus itself. `argusctl doctor` checks exactly that on a running cluster.
#
#   docker build -f deploy/node.Dockerfile -t registry.example.com/argus-node:0.1.0 .
#
# Ray's own image brings Ray 2.60.0 on Python 3.11 with CUDA; the gpu extra pins
# ray[serve,llm]==2.60.0 (the same Ray, so pip leaves it alone) and the vLLM that Ray pins
# (0.29.0), with torch built for CUDA 13: the nodes need NVIDIA driver 580 or newer.
FROM rayproject/ray:2.60.0-py311-gpu

WORKDIR /home/ray/argus
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users daemon ./daemon
COPY --chown=ray:users argusctl ./argusctl
RUN pip install --no-cache-dir '.[gpu]' \
 && python -c "import ray, vllm, daemon.frontend; assert ray.__version__ == '2.60.0', ray.__version__; print('ray', ray.__version__, 'vllm', vllm.__version__)"
# Models come from the shared mount every node has at the same path (storage.root).
VOLUME ["/private"]
