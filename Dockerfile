# The jobsheet image: the workers (python worker.py --role ...), the public API
# (python -m jobsheet.api) and the MinIO init job (python -m jobsheet.ops.minio_init).
#
# Lean on purpose: `pip install .` installs the runtime only, not the `local` extra (the
# temporal, rclone and test-server wheels of `jobsheet stack up` and the tests, about 330 MB), and
# no calculations: the operator's calculations are mounted from the host
# (docker-compose.yml: ./calculations at /etc/jobsheet/calculations, JOBSHEET_CALCULATIONS_FILE).
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# A compute worker starts each run through util-linux's prlimit and setpriv (rlimits, the switch
# to jobsheet-calc, no new privileges, death with the worker); Debian's image has them: the build
# fails here if it ever does not.
RUN command -v prlimit && command -v setpriv

COPY pyproject.toml README.md ./
COPY jobsheet ./jobsheet
COPY workflows ./workflows
COPY activities ./activities
COPY worker.py ./
# jobsheet runs the API and the jobs and ledger roles; jobsheet-calc owns nothing and runs the
# calculations: a compute worker started as root switches to it for each run, so a calculation
# cannot read the worker's environment or credentials, and RLIMIT_NPROC counts the calculations
# alone (docs/hardening.md).
# /etc/jobsheet/secrets is root's alone (0700): compose mounts a compute worker's secret (the
# payload keys) there rather than in /run/secrets, so a calculation, running as jobsheet-calc in
# the same container, cannot even reach the file (compose mounts secret files with the host's
# modes, readable by every user of the container).
RUN pip install . \
    && useradd --system --home /app jobsheet \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        jobsheet-calc \
    && install -d -m 0700 -o root -g root /etc/jobsheet/secrets \
    && install -d -m 0755 /etc/jobsheet/calculations

ENV JOBSHEET_CALCULATIONS_FILE=/etc/jobsheet/calculations/calculations.toml
USER jobsheet
STOPSIGNAL SIGTERM
EXPOSE 8090 9464
CMD ["python", "worker.py", "--role", "all"]
