# Image for running the suite in Kubernetes (conf/k8s/): producers, latency consumers, Locust
# master/workers, the reference stream processor. Build: docker build -t pipeline-loadtest:latest .
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN python -c 'import site; open(site.getsitepackages()[0] + "/pipeline-loadtest.pth", "w").write("/app")'
ENV PYTHONUNBUFFERED=1
USER 1000
