"""tests/apps/app.py under uWSGI (`--wsgi-file uwsgi_app.py`).

Each worker raises its own oom_score_adj to 1000 after the fork, so that
the kernel's OOM killer in the test's memory cgroup takes a worker, not the
master (the master loads the app, then forks; raising a worker's score
needs no privilege).
"""
import os
import sys

import uwsgi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from app import app as application  # noqa: E402


def _worker_first_to_go():
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")


uwsgi.post_fork_hook = _worker_first_to_go
