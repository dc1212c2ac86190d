# An App's SuperNode or SuperExec image: the stack's image (BASE) plus the packages in the App's lock, built by
# `fjs app-image APP_DIR` (apps/fjs/app_image.py) with a context that holds only that lock (app.lock).
# Same user (uid 10001), entrypoint, settings and read-only layout as BASE: only site-packages gains files.
ARG BASE
ARG BUILDER=python:3.11-slim-bookworm

# The App's packages, installed on their own (every pin hashed, no resolver: the lock is the whole set), so the
# final image gets one layer with them alone. The stack's venv lives at /opt/venv too: scripts' shebangs fit.
FROM ${BUILDER} AS packages
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY app.lock /tmp/app.lock
RUN python3 -m venv /opt/venv \
 && if grep -q '^[A-Za-z0-9]' /tmp/app.lock; then \
      /opt/venv/bin/pip install -q --no-deps --require-hashes -r /tmp/app.lock; fi \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools \
 && find /opt/venv -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && rm -f /opt/venv/bin/python* /opt/venv/bin/activate* /opt/venv/bin/Activate.ps1

FROM ${BASE}
ARG APP
# The ClientApp/ServerApp's missing-module line tells these images from the stack's own (flower_tuning.py).
ENV FJS_APP=${APP}
LABEL org.flower-jax-stack.app=${APP}
COPY --from=packages /opt/venv/lib/python3.11/site-packages/ /opt/venv/lib/python3.11/site-packages/
COPY --from=packages /opt/venv/bin/ /opt/venv/bin/
