#!/usr/bin/env python3
"""Capture the proc connector's events of a pre-fork master recycling its
workers, for the pool source's event step (src/pools/events.rs). Run as
root (or on a kernel that lets anyone subscribe).

  tools/capture_pool_events.py OUT_DIR      (e.g. fixtures/netlink/6.18)

Each scenario runs a small master in a session of its own, which forks
workers the way Gunicorn's arbiter does (fork, the child sleeps), and keeps
the events about the master and its children, in the order the kernel sent
them, concatenated into one file:

- proc_pool_exit_then_fork.bin: workers a and b; a exits with code 0 (as
  after --max-requests), the master reaps it and forks c in its place;
- proc_pool_fork_then_exit.bin: workers a and b; the master forks c first,
  then ends a with SIGTERM and reaps it (a replacement made before the old
  one goes);
- proc_pool_recycle_burst.bin: four workers that each exit after 10-40 ms,
  each replaced at once, twenty times; the last four live on;
- proc_pool_master_reexec.bin: workers a and b; the master execs a new
  program in place (same pid), which forks d.

The MANIFEST lines of these files are replaced; the other lines stay (they
are tools/capture_netlink.py's). The master's pids go in them: master, and
the workers by their letter.
"""
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_EVENT_FORK, PROC_EVENT_EXEC, PROC_EVENT_EXIT = 1, 2, 0x80000000

out_dir = sys.argv[1]


def cn_request(op, nonce):
    data = struct.pack("I", op)
    cn = struct.pack("IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, nonce, len(data), 0) + data
    return struct.pack("IHHII", 16 + len(cn), NLMSG_DONE, 0, 0, os.getpid()) + cn


def messages(buf):
    off = 0
    while off + 16 <= len(buf):
        (ln,) = struct.unpack_from("I", buf, off)
        if ln < 16 or off + ln > len(buf):
            break
        yield buf[off:off + ln]
        off += (ln + 3) & ~3


def event(msg):
    """(what, fields): fork (parent_pid, parent_tgid, child_pid, child_tgid),
    exec and exit (pid, tgid, ...)."""
    what = struct.unpack_from("I", msg, 36)[0]
    return what, struct.unpack_from("6i", msg, 52)


conn = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
conn.bind((0, CN_IDX_PROC))
conn.send(cn_request(1, 0x706f6f6c))  # PROC_CN_MCAST_LISTEN


def sleeper(seconds, code=0):
    pid = os.fork()
    if pid == 0:
        time.sleep(seconds)
        os._exit(code)
    return pid


def master(body):
    """Fork a master in a session of its own running `body(report)`; the
    master reports its workers' pids (letter=pid) through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        try:
            body(lambda **kv: os.write(w, (" ".join("%s=%d" % x for x in kv.items()) + "\n").encode()))
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def capture(name, body, until):
    """Run a master, keep the events of its process tree until `until`
    holds for them, end the tree, and write the file."""
    pid, pipe = master(body)
    tree = {pid}
    kept = []
    deadline = time.time() + 10
    while not until(pid, kept):
        if time.time() > deadline:
            os.killpg(pid, signal.SIGKILL)
            sys.exit("scenario %s: the expected events did not arrive" % name)
        if not select.select([conn], [], [], 0.2)[0]:
            continue
        for m in messages(conn.recv(1 << 16)):
            what, f = event(m)
            if what == PROC_EVENT_FORK and f[1] in tree:
                tree.add(f[3])
                kept.append((what, f, m))
            elif what in (PROC_EVENT_EXEC, PROC_EVENT_EXIT) and f[1] in tree:
                kept.append((what, f, m))
    facts = {"master": pid}
    time.sleep(0.1)
    for line in os.read(pipe, 4096).decode().split():
        k, v = line.split("=")
        facts[k] = int(v)
    os.close(pipe)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(b"".join(m for _, _, m in kept))
    print("wrote", name, len(kept), "events", facts)
    return " ".join([name] + ["%s=%s" % kv for kv in facts.items()])


def forks(master_pid, kept):
    return [f[3] for w, f, _ in kept if w == PROC_EVENT_FORK and f[1] == master_pid and f[2] == f[3]]


def exits(kept):
    return [f[0] for w, f, _ in kept if w == PROC_EVENT_EXIT and f[0] == f[1]]


def exit_then_fork(report):
    a = sleeper(0.3)
    b = sleeper(60)
    os.waitpid(a, 0)
    c = sleeper(60)
    report(a=a, b=b, c=c)


def fork_then_exit(report):
    a = sleeper(60)
    b = sleeper(60)
    time.sleep(0.2)
    c = sleeper(60)
    os.kill(a, signal.SIGTERM)
    os.waitpid(a, 0)
    report(a=a, b=b, c=c)


def recycle_burst(report):
    live = {sleeper(random.uniform(0.01, 0.04)) for _ in range(4)}
    recycles = 0
    while recycles < 20:
        pid, _ = os.wait()
        live.discard(pid)
        recycles += 1
        live.add(sleeper(60 if recycles > 16 else random.uniform(0.01, 0.04)))
    report(workers=4, recycles=recycles)


def master_reexec(report):
    a = sleeper(60)
    b = sleeper(60)
    report(a=a, b=b)
    time.sleep(0.2)
    after = ("import os, time\n"
             "d = os.fork()\n"
             "if d == 0:\n    time.sleep(60)\n    os._exit(0)\n"
             "time.sleep(60)\n")
    os.execv(sys.executable, [sys.executable, "-c", after])


lines = [
    capture("proc_pool_exit_then_fork.bin", exit_then_fork,
            lambda m, kept: len(forks(m, kept)) >= 3),
    capture("proc_pool_fork_then_exit.bin", fork_then_exit,
            lambda m, kept: len(exits(kept)) >= 1),
    capture("proc_pool_recycle_burst.bin", recycle_burst,
            lambda m, kept: len(forks(m, kept)) >= 24 and len(exits(kept)) >= 20),
    capture("proc_pool_master_reexec.bin", master_reexec,
            lambda m, kept: any(w == PROC_EVENT_EXEC for w, _, _ in kept) and len(forks(m, kept)) >= 3),
]
conn.send(cn_request(2, 0x706f6f6d))  # PROC_CN_MCAST_IGNORE
conn.close()

path = os.path.join(out_dir, "MANIFEST")
names = {l.split(" ")[0] for l in lines}
with open(path) as f:
    old = [l.rstrip("\n") for l in f if l.split(" ")[0] not in names]
with open(path, "w") as f:
    f.write("\n".join(old + lines) + "\n")
