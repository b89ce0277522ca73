# The application image for the distributed deployment (compose.yaml): one image, many roles.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# DejaVu Sans: ticket PDFs print names and titles beyond Latin-1 (infra/ticket_documents.py).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY commands ./commands
COPY projections ./projections
COPY read_api ./read_api
COPY write_api ./write_api
COPY process_managers ./process_managers
COPY recommender ./recommender
COPY infra ./infra
COPY audit ./audit
COPY http_shell ./http_shell
COPY ticketblitz ./ticketblitz
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 ticketblitz
USER ticketblitz
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)" || exit 1
CMD ["ticketblitz", "serve", "--port", "8080"]
