# sstbc runtime image: CUDA 12 + cuDNN 9 for onnxruntime-gpu, non-root, pinned dependencies.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false VIRTUAL_ENV=/opt/sstbc
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* && python3.11 -m venv $VIRTUAL_ENV
ENV PATH=$VIRTUAL_ENV/bin:$PATH

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY bias_correction ./bias_correction
COPY flows ./flows
# The CUDA build of the pinned torch version first, then everything else from the lock (minus the CPU torch pin).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128 \
    && grep -v '^torch==' constraints.txt > /tmp/constraints.txt \
    && pip install -c /tmp/constraints.txt . && rm /tmp/constraints.txt

RUN useradd --create-home --uid 10001 sstbc && mkdir -p /data /models && chown sstbc /data /models
USER sstbc
ENV SSTBC_STORAGE_ROOT=/data SSTBC_MODEL_STORE=/models SSTBC_PROVIDERS=auto
VOLUME ["/data", "/models"]

HEALTHCHECK --interval=5m --timeout=30s CMD python -c "import bias_correction, onnxruntime; print(onnxruntime.get_available_providers())" || exit 1
ENTRYPOINT ["sstbc"]
CMD ["--help"]
