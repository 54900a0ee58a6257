# The worker image (also carries the starter CLI: `docker compose run --rm worker starter --help`,
# and the HTTP API: `python -m api`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY warmup ./warmup
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY starter ./starter
COPY api ./api
RUN pip install --no-cache-dir .
USER nobody
CMD ["python", "-m", "workers.run"]
