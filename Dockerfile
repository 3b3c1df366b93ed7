# One image for the API and the worker: `docker run IMAGE serve` or `docker run IMAGE worker`.
# On a closed network, scripts/images.sh makes the base image locally (README: "Running on several machines").
# Stages are ordered so that a change to the code rebuilds only small layers: the dependencies follow
# pyproject.toml, the trained classifier follows service/classify.
FROM python:3.11-slim-bookworm AS dependencies
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# From pyproject.toml alone (empty packages stand in for the code).
COPY pyproject.toml ./
RUN mkdir -p service workers && touch README.md service/__init__.py workers/__init__.py \
    && /opt/venv/bin/pip install . && /opt/venv/bin/pip uninstall --yes citizen-intake

# The classifier, trained now so that no process has to at start-up (nor write anywhere to cache it).
FROM dependencies AS model
COPY service/__init__.py ./service/
COPY service/classify ./service/classify
RUN PYTHONPATH=/src /opt/venv/bin/python -c \
    "from service.classify.model import Classifier; Classifier.load_or_train('/opt/models')" \
    && test -n "$(ls /opt/models)"

FROM python:3.11-slim-bookworm AS runtime
# MODEL_CACHE_DIR: read-only at run time. MIGRATIONS_DIR: see service/cli.py.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MEDIA_DIR=/data/media HOST=0.0.0.0 PORT=8000 MODEL_CACHE_DIR=/opt/models MIGRATIONS_DIR=/app/alembic
RUN useradd --create-home --uid 10001 intake && mkdir -p /data/media && chown -R intake /data
COPY --from=dependencies /opt/venv /opt/venv
COPY --from=model /opt/models /opt/models
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY workers /src/workers
RUN pip install --no-deps /src && rm -rf /src
WORKDIR /app
COPY alembic.ini ./
COPY alembic ./alembic
COPY service/catalogue ./service/catalogue
# The model trained above is the one this code loads (same corpus, code and scikit-learn).
RUN test -f "/opt/models/$(python -c 'from service.classify.model import corpus_version; print(f"classifier-{corpus_version()}.joblib")')"
# /docs and /redoc load their scripts and styles from a package installed above (service/api_docs.py).
RUN python -c "from service.api_docs import missing_assets; assert not missing_assets(), missing_assets()"
# The commit this image was built from, for intake_build_info on /metrics (scripts/images.sh passes
# it: --build-arg BUILD_COMMIT=...). Last, so a new commit rebuilds no layer with files in it.
ARG BUILD_COMMIT=""
ENV BUILD_COMMIT=$BUILD_COMMIT
USER intake
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz')"
ENTRYPOINT ["intake"]
CMD ["serve"]
