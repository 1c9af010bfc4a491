"""Gunicorn config for OOM tests: the master runs with oom_score_adj -1000
(set by the test before exec) and each worker resets its own to 0 after
fork, so the kernel's OOM killer takes workers, never the master."""


def post_fork(server, worker):
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("0")
