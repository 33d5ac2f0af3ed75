# The suite's image for Kubernetes (docs/kubernetes.md): Locust master and workers of every locustfile,
# Kafka latency consumers, the reference stream processor.
#   docker build -t pipeline-loadtest:latest .
# It runs as an unprivileged user (uid 10001) and writes only to /app/results (run folders: mount a volume
# there), /app/.run (spill files of rows ClickHouse did not take yet, run state) and /tmp; sar needs
# sysstat, which the image carries for the generator host's own system activity.
FROM python:3.11-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sysstat \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN python -c 'import site; open(site.getsitepackages()[0] + "/pipeline-loadtest.pth", "w").write("/app")' \
    && groupadd --gid 10001 loadtest && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin loadtest \
    && mkdir -p /app/results /app/.run/monitor-spill \
    && chown -R 10001:10001 /app/results /app/.run
ENV PYTHONUNBUFFERED=1 HOME=/tmp LOCUST_SPILL_DIR=/app/.run/monitor-spill
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
