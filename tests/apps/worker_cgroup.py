"""Gunicorn config: each worker moves itself into the memory cgroup named by
BGW_WORKER_CGROUP (its cgroup.procs file) right after fork, with
oom_score_adj 0, while the master stays where it was (outside the
worker's cgroup, so out of reach of its OOM kills). The worker's cgroup is then not the master's, so a kill in it is
tied to the pool only by the fork the exporter saw."""
import os


def post_fork(server, worker):
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("0")
    with open(os.environ["BGW_WORKER_CGROUP"], "w") as f:
        f.write(str(os.getpid()))
