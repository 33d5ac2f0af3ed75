# gunicorn, baseline profile of the LAMPI site: one synchronous worker process, as a first
# deployment would run it. The stack launcher adds --bind (loopback) and the app path.
workers = 1
worker_class = "sync"
timeout = 30
# Listen queue long enough that overload shows as latency and 5xx from nginx, not as resets.
backlog = 2048
accesslog = None
errorlog = "-"
loglevel = "warning"
