# The jobsheet image: the worker (python worker.py) and the public API (python -m jobsheet.api).
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY jobsheet ./jobsheet
COPY workflows ./workflows
COPY activities ./activities
COPY calculations ./calculations
COPY worker.py ./
# jobsheet runs the API (and any role but compute); jobsheet-calc owns nothing and runs the
# calculations: a worker started as root (compose's worker) switches to it for each run, so a
# calculation cannot read the worker's environment or credentials, and RLIMIT_NPROC counts the
# calculations alone (docs/2026-11-28-hardening.md).
RUN pip install . \
    && useradd --system --home /app jobsheet \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        jobsheet-calc

USER jobsheet
STOPSIGNAL SIGTERM
EXPOSE 8090
CMD ["python", "worker.py", "--role", "all"]
