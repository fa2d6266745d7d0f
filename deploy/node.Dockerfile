# One image for every Ray node of a GPU cluster (head and workers) that argus serves on.
# argus deploys Serve apps whose code is `daemon.replicas` and Ray Serve LLM + vLLM; Serve
# builds them in a task that can land on any node, so every node needs the same Ray, the
# same vLLM and argus itself. `argusctl doctor` checks exactly that on a running cluster
# (and /dev/shm's size, and on each GPU node that torch sees the GPUs free there and a matmul
# runs on them; GPUs in use are not touched).
#
# CUDA: the gpu extra pins ray[serve,llm]==2.60.0, which pins vllm==0.29.0 and torch==2.13.0;
# the torch 2.13.0 wheel on PyPI requires cuda-toolkit==13.0.3 (its wheel metadata) and vLLM
# 0.29.0's extensions link libcudart.so.13: both are CUDA 13.0 builds, so the nodes need NVIDIA
# driver 580 or newer. The base image is Ray's CUDA 13.0 build of Ray 2.60.0 on Python 3.11
# (tag -cu130, Ray's short name for its cu13.0.0-cudnn platform). Not -gpu: that tag is an
# alias of Ray's default GPU platform, CUDA 12.1.
#
# The base image's digest: argus commits none (none could be resolved where this file was
# written: no registry access), so RAY_BASE_DIGEST is a required build argument without a
# default and the build refuses to start without it (FROM "...-cu130@" is an invalid reference
# format). Resolve it once on a machine that reaches Docker Hub, then commit it as the default
# so every build after that uses the same image (the tag can be re-pushed, the digest cannot):
#   crane digest rayproject/ray:2.60.0-py311-cu130        # or: docker buildx imagetools inspect ...
#   edit the ARG line below to: ARG RAY_BASE_DIGEST=sha256:<that digest>   (and commit it)
#   docker build -f deploy/node.Dockerfile -t registry.example.com/argus-node:0.1.0 .
# Until then pass it on every build: --build-arg RAY_BASE_DIGEST=sha256:<that digest>.
#
# Shared memory: vLLM 0.29's Ray executor keeps shared-memory rings in /dev/shm (160 MiB per
# engine, 240 MiB per worker, so up to 400 MiB per GPU), NCCL its intra-node buffers too;
# Docker's and Kubernetes' default is 64 MB. `argusctl doctor` wants 512 MiB per GPU (at
# least 1 GiB) on GPU nodes and nothing on nodes without GPUs. Run the
# container with --shm-size=16g (or --ipc=host); on KubeRay mount an emptyDir with
# medium: Memory (sizeLimit: 16Gi) at /dev/shm in every Ray pod (docs/operating.md).
ARG RAY_BASE_DIGEST
FROM rayproject/ray:2.60.0-py311-cu130@${RAY_BASE_DIGEST}

WORKDIR /home/ray/argus
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users daemon ./daemon
COPY --chown=ray:users argusctl ./argusctl
RUN pip install --no-cache-dir '.[gpu]' \
 && python -c "import ray, vllm, torch, daemon.replicas.model_server, daemon.replicas.frontend, daemon.replicas.lease; assert ray.__version__ == '2.60.0', ray.__version__; assert torch.version.cuda.startswith('13.'), torch.version.cuda; print('ray', ray.__version__, 'vllm', vllm.__version__, 'torch', torch.__version__, 'cuda', torch.version.cuda)"
# Models come from the shared mount every node has at the same path (storage.root).
VOLUME ["/private"]
