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
RUN pip install . && useradd --system --home /app jobsheet

USER jobsheet
STOPSIGNAL SIGTERM
EXPOSE 8090
CMD ["python", "worker.py", "--role", "all"]
