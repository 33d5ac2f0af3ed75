# gunicorn, tuned profile of the LAMPI site: one sync worker per core plus one (Django pages are
# CPU-bound, so threads add little), workers preloaded so they share the imported app.
import multiprocessing
import os

workers = int(os.environ.get("LAMPISITE_WORKERS", multiprocessing.cpu_count() + 1))
worker_class = "sync"
preload_app = True
timeout = 30
backlog = 2048
accesslog = None
errorlog = "-"
loglevel = "warning"
