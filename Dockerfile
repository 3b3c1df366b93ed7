# One image for the API and the worker: `docker run IMAGE serve` or `docker run IMAGE worker`.
# On a closed network, scripts/images.sh makes the base image locally (README: "Running on several machines").
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# The dependencies first, from pyproject.toml alone (empty packages stand in for the code): a change to
# the code or the README reuses this slow layer.
COPY pyproject.toml ./
RUN mkdir -p service workers && touch README.md service/__init__.py workers/__init__.py \
    && /opt/venv/bin/pip install . && /opt/venv/bin/pip uninstall --yes citizen-intake
COPY README.md ./
COPY service ./service
COPY workers ./workers
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim-bookworm AS runtime
# MODEL_CACHE_DIR: the classifier trained below, read-only at run time. MIGRATIONS_DIR: see service/cli.py.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MEDIA_DIR=/data/media HOST=0.0.0.0 PORT=8000 \
    MODEL_CACHE_DIR=/opt/models MIGRATIONS_DIR=/app/alembic
RUN useradd --create-home --uid 10001 intake && mkdir -p /data/media && chown -R intake /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini ./
COPY alembic ./alembic
COPY service/catalogue ./service/catalogue
# Train the classifier now, so that no process has to at start-up (nor write anywhere to cache it).
RUN intake classify </dev/null && test -n "$(ls /opt/models)"
USER intake
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz')"
ENTRYPOINT ["intake"]
CMD ["serve"]
