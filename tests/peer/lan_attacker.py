#!/usr/bin/env python3
"""A host on the LAN that attacks the box's pairing ports, for tests/hostile_lan.rs.

usage:
  lan_attacker.py idle  SRC HOST PORT N        open N TCP connections and send nothing
  lan_attacker.py flood SRC HOST PORT SECONDS  open connections as fast as it can for
                                               SECONDS, each held until the box closes it

SRC is the address the connections come from (any 127.x.y.z on loopback). It prints
JSON lines: {"open": n} once the idle connections are made (then it holds them until
stdin closes), and {"made": n, "seconds": s, "refused": r} when a flood ends.
"""

import errno
import json
import resource
import select
import socket
import sys
import time


def say(**event):
    print(json.dumps(event), flush=True)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(src, host, port, blocking):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, 0))
    s.setblocking(blocking)
    if blocking:
        s.connect((host, port))
    else:
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            return None
    return s


def idle(src, host, port, n):
    raise_fd_limit()
    held = [connect(src, host, port, True) for _ in range(n)]
    say(open=len(held))
    sys.stdin.read()


def flood(src, host, port, seconds):
    raise_fd_limit()
    open_socks = {}
    made = refused = 0
    end = time.monotonic() + seconds
    poller = select.epoll()
    while time.monotonic() < end:
        # A burst of new connections, then reap what the box closed.
        for _ in range(50):
            s = connect(src, host, port, False)
            if s is None:
                refused += 1
                continue
            made += 1
            open_socks[s.fileno()] = s
            poller.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP)
        for fd, _ in poller.poll(0):
            s = open_socks.pop(fd, None)
            if s is not None:
                poller.unregister(fd)
                s.close()
        # Keep under the fd limit: drop the oldest ourselves if the box holds too many.
        while len(open_socks) > 20000:
            fd, s = next(iter(open_socks.items()))
            poller.unregister(fd)
            del open_socks[fd]
            s.close()
    say(made=made, seconds=seconds, refused=refused)
    for s in open_socks.values():
        s.close()


def main():
    mode, src, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "idle":
        idle(src, host, port, int(sys.argv[5]))
    elif mode == "flood":
        flood(src, host, port, float(sys.argv[5]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
