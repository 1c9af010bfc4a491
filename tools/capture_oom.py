#!/usr/bin/env python3
"""Capture real memcg OOM-kill records from /dev/kmsg (run as root, cgroup v1).

Each victim runs in its own throwaway memory cgroup limited to 64 MiB, so only
the victim is killed; the cgroup is always removed afterwards.
"""
import os, subprocess, sys, time, errno

CG = "/sys/fs/cgroup/memory/bgw_fixture_capture"
PY = sys.executable
# comm names (<=15 bytes): plain, with space/colon/parens, with backslash and non-ASCII.
NAMES = [None, b"gunicorn: w (a)", b"bgw\\x\xc3\xa9 z"]

def alloc_cmd(name):
    pre = ""
    if name is not None:
        pre = ("import ctypes;ctypes.CDLL(None).prctl(15, %r, 0, 0, 0);" % name)
    return pre + "a=[]\nwhile True: a.append(bytearray(1<<20))"

def run_victim(name):
    os.mkdir(CG)
    try:
        with open(CG + "/memory.limit_in_bytes", "w") as f:
            f.write(str(64 << 20))
        script = 'echo $$ > %s/cgroup.procs && exec %s -c "$1"' % (CG, PY)
        p = subprocess.Popen(["sh", "-c", script, "sh", alloc_cmd(name)])
        try:
            rc = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill(); rc = p.wait()
        print("victim", name, "exit", rc, file=sys.stderr)
    finally:
        for _ in range(50):
            with open(CG + "/cgroup.procs") as f:
                if not f.read().strip():
                    break
            time.sleep(0.1)
        os.rmdir(CG)

def main(out):
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    os.lseek(fd, 0, os.SEEK_END)  # only records produced from now on
    for n in NAMES:
        run_victim(n)
    time.sleep(0.5)
    recs = []
    while True:
        try:
            recs.append(os.read(fd, 8192))
        except OSError as e:
            if e.errno == errno.EAGAIN:
                break
            if e.errno == errno.EPIPE:  # overwritten records; keep going
                continue
            raise
    with open(out, "wb") as f:
        for r in recs:
            f.write(r if r.endswith(b"\n") else r + b"\n")
    print(len(recs), "records", file=sys.stderr)

if __name__ == "__main__":
    main(sys.argv[1])
