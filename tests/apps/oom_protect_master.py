"""Gunicorn config for OOM tests: each worker raises its own oom_score_adj
to 1000 after fork, so the kernel's OOM killer takes a worker before the
master. (Lowering the master's to -1000 would need CAP_SYS_RESOURCE, which
a sandboxed root may lack; raising is always allowed.)

With BGW_WORKER_CGROUP set (a cgroup.procs file), each worker also moves
itself into that cgroup after fork, so that a test can keep the master out
of the workers' cgroup altogether."""

import os


def post_fork(server, worker):
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")
    cgroup = os.environ.get("BGW_WORKER_CGROUP")
    if cgroup:
        with open(cgroup, "w") as f:
            f.write(str(os.getpid()))
