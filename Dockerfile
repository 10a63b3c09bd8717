# Oneiric Operator image: `oneiric run` as a non-root user on a read-only root filesystem.
# Build: docker build -t oneiric/operator:dev .   Lint: make image-lint
# The base is pinned to an exact patch tag; pin its digest too when you publish (PYTHON_IMAGE=...@sha256:...).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a wheel of the package, installed into a self-contained virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY oneiric-runtime ./oneiric-runtime
# Every dependency ships manylinux wheels for CPython 3.11: no compiler is needed, none is installed.
RUN python -m venv /opt/oneiric \
 && /opt/oneiric/bin/pip wheel --no-deps --wheel-dir /wheels ./oneiric-runtime . \
 && /opt/oneiric/bin/pip install --only-binary=:all: --find-links /wheels /wheels/oneiric_operator-*.whl \
 && /opt/oneiric/bin/pip uninstall --yes pip \
 && /opt/oneiric/bin/python -m compileall -q /opt/oneiric/lib \
 && /opt/oneiric/bin/oneiric --help >/dev/null

# --- runtime: the venv only; no pip, no build tools, nothing written outside /tmp ------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="oneiric-operator" \
      org.opencontainers.image.description="Declarative, live and explainable component selection for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/oneiric/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
COPY --from=build /opt/oneiric /opt/oneiric
# 65532: the conventional "nonroot" uid/gid; numeric so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 9443
ENTRYPOINT ["oneiric"]
CMD ["run"]
