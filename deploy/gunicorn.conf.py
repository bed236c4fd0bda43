# Example gunicorn configuration for handled (installed as /etc/handled/gunicorn.conf.py
# by docs/DEPLOYMENT_CHECKLIST.md; tests/test_pgbouncer_load.py runs the app with it).
#
#   gunicorn -c /etc/handled/gunicorn.conf.py app:app
#
# Connection budget: every worker process has its own pool of at most
# `connection_limit` connections per database (the URL parameter), so the app
# opens at most workers x connection_limit client connections to PgBouncer, and
# PgBouncer turns them into at most its default_pool_size server connections on
# PRIMARY. Keep threads <= connection_limit, or threads wait for a connection.
import os
import shutil

bind = os.environ.get("HANDLED_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("HANDLED_WORKERS", "3"))
worker_class = "gthread"
threads = int(os.environ.get("HANDLED_THREADS", "2"))
timeout = 60            # a request longer than this is killed; big work goes to the job queue
graceful_timeout = 30
keepalive = 5
max_requests = 2000     # recycle workers now and then (memory), with jitter so not all at once
max_requests_jitter = 200
preload_app = False     # each worker builds its own app, pools and Redis client after the fork
forwarded_allow_ips = "127.0.0.1"  # nginx on the same host sets X-Forwarded-*
accesslog = "-"
errorlog = "-"
loglevel = "info"

# /metrics across workers: prometheus_client's multiprocess mode keeps each worker's
# counters in files under PROMETHEUS_MULTIPROC_DIR; the folder is emptied at start.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def on_starting(server):
    if _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
        os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server, worker):
    if _metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
