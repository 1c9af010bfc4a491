#!/usr/bin/env python3
"""Capture real netlink messages for the parsers in src/netlink/ (run as root).

  tools/capture_netlink.py OUT_DIR      (e.g. fixtures/netlink/6.18)

Writes, for each scenario, the datagrams the kernel sent, concatenated (a
netlink buffer may hold several messages, so the file parses as one), and a
MANIFEST naming each file with the pids or inodes the scenario made:

- proc connector (NETLINK_CONNECTOR, CN_IDX_PROC): the subscription ack, a
  child that exits with code 3, one killed by SIGKILL, one killed by SIGSEGV,
  one that dumps core on SIGSEGV, a fork + exec of /bin/true, a thread that
  starts and ends, and a threaded child killed by SIGKILL. Only the messages
  about the scenario's own pids are kept, not other processes on the host.
- sock_diag (NETLINK_SOCK_DIAG): a unix listener with backlog 8 and 3 pending
  connections, a TCP listener on 127.0.0.1 and one on ::1 with backlog 8 and
  2 pending, each queried by inode / address with exact lookups, and the
  replies for a unix inode and a TCP port that no longer exist.

This is written apart from the Rust readers on purpose: the fixtures record
what the kernel sends, not what our request builder expects.
"""
import errno
import os
import resource
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

NETLINK_SOCK_DIAG = 4
NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
UDIAG_SHOW_RQLEN = 0x10
PROC_EVENT_FORK, PROC_EVENT_EXEC, PROC_EVENT_COREDUMP, PROC_EVENT_EXIT = 1, 2, 0x40000000, 0x80000000

out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
manifest = []


def write(name, data, **facts):
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(data)
    manifest.append(" ".join([name] + ["%s=%s" % kv for kv in facts.items()]))
    print("wrote", name, len(data), "bytes", facts)


# ---- proc connector ---------------------------------------------------------

def cn_request(op, nonce):
    # The kernel answers with ack = our ack + 1 (its seq is its own counter).
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


def event_pids(msg):
    """The pids a proc event is about, and its type."""
    what = struct.unpack_from("I", msg, 36)[0]
    f = struct.unpack_from("6i", msg, 52)
    if what == PROC_EVENT_FORK:
        return what, {f[0], f[1], f[2], f[3]}
    if what in (PROC_EVENT_EXIT, PROC_EVENT_COREDUMP, PROC_EVENT_EXEC):
        return what, {f[0], f[1]}
    return what, set()


conn = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
conn.bind((0, CN_IDX_PROC))
nonce = 0x62677700 | (os.getpid() & 0xff)
conn.send(cn_request(1, nonce))  # PROC_CN_MCAST_LISTEN
deadline = time.time() + 2
ack = None
while ack is None and time.time() < deadline:
    if select.select([conn], [], [], 0.2)[0]:
        for m in messages(conn.recv(65536)):
            idx, val, seq, ackno = struct.unpack_from("IIII", m, 16)
            what = struct.unpack_from("I", m, 36)[0]
            if what == 0 and ackno == nonce + 1:
                ack = m
if ack is None:
    sys.exit("no ack from the proc connector")
write("proc_subscribe_ack.bin", ack, ack=nonce + 1, err=0)


def capture(name, pids_of, until, **facts):
    """Read until `until(kept)` holds; keep the messages about pids_of()."""
    kept = []
    deadline = time.time() + 5
    while time.time() < deadline:
        if not select.select([conn], [], [], 0.2)[0]:
            continue
        for m in messages(conn.recv(65536)):
            what, pids = event_pids(m)
            if pids & pids_of():
                kept.append((what, m))
        if until(kept):
            break
    else:
        sys.exit("scenario %s: the expected events did not arrive" % name)
    write(name, b"".join(m for _, m in kept), **facts)


def exited(pid):
    return lambda kept: any(w == PROC_EVENT_EXIT and struct.unpack_from("i", m, 52)[0] == pid for w, m in kept)


def child(body):
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(99)
    return pid


me = os.getpid()

pid = child(lambda: os._exit(3))
os.waitpid(pid, 0)
capture("proc_exit_code3.bin", lambda: {pid}, exited(pid), parent=me, child=pid)

for sig, name in [(signal.SIGKILL, "proc_killed_sigkill.bin"), (signal.SIGSEGV, "proc_killed_sigsegv.bin")]:
    pid = child(lambda: time.sleep(60))
    time.sleep(0.05)
    os.kill(pid, sig)
    os.waitpid(pid, 0)
    capture(name, lambda: {pid}, exited(pid), parent=me, child=pid, signal=int(sig))


def segv_with_core():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    os.kill(os.getpid(), signal.SIGSEGV)


cwd = os.getcwd()
with tempfile.TemporaryDirectory() as core_dir:
    os.chdir(core_dir)  # core_pattern "core" writes into the cwd
    pid = child(segv_with_core)
    _, status = os.waitpid(pid, 0)
    os.chdir(cwd)
    if not os.WCOREDUMP(status):
        sys.exit("no core dump: check /proc/sys/kernel/core_pattern")
    capture("proc_killed_sigsegv_core.bin", lambda: {pid}, exited(pid), parent=me, child=pid, signal=11, core=1)

pid = child(lambda: os.execv("/bin/true", ["true"]))
os.waitpid(pid, 0)
capture("proc_fork_exec_true.bin", lambda: {pid}, exited(pid), parent=me, child=pid)

tids = []
t = threading.Thread(target=lambda: tids.append(threading.get_native_id()))
t.start()
t.join()
capture("proc_thread_start_end.bin", lambda: set(tids), exited(tids[0]), tgid=me, thread=tids[0])


def threaded_sleeper():
    for _ in range(2):
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    time.sleep(60)


pid = child(threaded_sleeper)
time.sleep(0.2)
threads = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
capture("proc_threaded_killed_sigkill.bin", lambda: set(threads),
        lambda kept: sum(w == PROC_EVENT_EXIT for w, _ in kept) >= len(threads),
        parent=me, child=pid, threads=len(threads))

conn.send(cn_request(2, nonce + 1))  # PROC_CN_MCAST_IGNORE
conn.close()

# ---- sock_diag ---------------------------------------------------------------

diag = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
seq = [100]


def ask(payload):
    seq[0] += 1
    diag.send(struct.pack("IHHII", 16 + len(payload), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq[0], 0) + payload)
    return diag.recv(65536)


def unix_req(ino):
    # struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
    return struct.pack("BBHIII", socket.AF_UNIX, 0, 0, 0xffffffff, ino, UDIAG_SHOW_RQLEN) + b"\xff" * 8


def inet_req(family, addr, port):
    # struct inet_diag_req_v2 with struct inet_diag_sockid (ports and
    # addresses in network order), cookie INET_DIAG_NOCOOKIE.
    raw = socket.inet_pton(family, addr).ljust(16, b"\0")
    sockid = struct.pack("!HH", port, 0) + raw + b"\0" * 16 + struct.pack("I", 0) + b"\xff" * 8
    return struct.pack("BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << 10) + sockid


with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "app.sock")
    lsn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsn.bind(path)
    lsn.listen(8)
    clients = []
    for _ in range(3):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        clients.append(c)
    ino = os.fstat(lsn.fileno()).st_ino
    write("sock_diag_unix_listen8_pending3.bin", ask(unix_req(ino)), inode=ino, length=3, limit=8)
    for c in clients:
        c.close()
    lsn.close()
    write("sock_diag_unix_gone.bin", ask(unix_req(ino)), inode=ino)

for family, addr, name in [(socket.AF_INET, "127.0.0.1", "tcp4"), (socket.AF_INET6, "::1", "tcp6")]:
    lsn = socket.socket(family, socket.SOCK_STREAM)
    lsn.bind((addr, 0))
    lsn.listen(8)
    port = lsn.getsockname()[1]
    clients = []
    for _ in range(2):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.connect((addr, port))
        clients.append(c)
    time.sleep(0.1)  # the final ACK moves each connection to the accept queue
    ino = os.fstat(lsn.fileno()).st_ino
    write("sock_diag_%s_listen8_pending2.bin" % name, ask(inet_req(family, addr, port)),
          inode=ino, addr=addr, port=port, length=2, limit=8)
    for c in clients:
        c.close()
    lsn.close()
    write("sock_diag_%s_gone.bin" % name, ask(inet_req(family, addr, port)), addr=addr, port=port)

with open(os.path.join(out_dir, "MANIFEST"), "w") as f:
    f.write("# Written by tools/capture_netlink.py (proc_pool_*: tools/capture_pool_events.py) on Linux %s: file, then what it holds.\n" % os.uname().release)
    f.write("\n".join(manifest) + "\n")
