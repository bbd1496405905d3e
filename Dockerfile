# syntax=docker/dockerfile:1
# agent-sandbox-webhook image. Build: docker build -t agent-sandbox-webhook:0.1.0 .
# The final stage has no compiler and no package manager cache, runs as UID 65532, and writes
# nothing outside /tmp and the certificate emptyDir, so it runs with readOnlyRootFilesystem.
# It also runs under an arbitrary UID with GID 0 (OpenShift's restricted-v2 SCC assigns one
# from the namespace's range): it needs no passwd entry, and everything it reads is owned by
# group 0 with the owner's permissions.

FROM python:3.12-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# Build the project wheel and every dependency wheel here; the runtime stage only installs them.
RUN pip wheel --wheel-dir /wheels .

FROM python:3.12-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TMPDIR=/tmp
RUN python -m venv /opt/venv
COPY --from=builder /wheels /wheels
# Only the wheels built above (--no-index), so versions are whatever the builder resolved.
# Byte-compile at build time: at run time the root filesystem is read-only.
RUN pip install --no-index --find-links=/wheels /wheels/*.whl \
    && rm -rf /wheels \
    && python -m compileall -q /opt/venv \
    && chgrp -R 0 /opt/venv \
    && chmod -R g=u /opt/venv
USER 65532:0
EXPOSE 8443
ENTRYPOINT ["agent-sandbox-webhook"]
CMD ["serve"]
