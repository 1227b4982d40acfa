#!/usr/bin/env python3
"""spec/e2e/lib/numbered_server.py PORT TOTAL LOG: a TCP server on 127.0.0.1:PORT that sends
the lines 1..TOTAL ("<n>\n"), 20 lines every 10 ms, to one client at a time. When a client
goes away it waits for the next one and goes on with the line after the last one it handed
to the kernel. LOG gets one line per event, times in ms since the epoch:
  sent FIRST LAST MS    lines FIRST..LAST handed to the kernel at MS
  accept MS / drop MS   a client connected / the connection failed
  done MS               every line was sent (the connection then stays open, idle)
"""
import socket
import sys
import time

port, total, log_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
log = open(log_path, "a", buffering=1)


def now_ms():
    return int(time.time() * 1000)


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(4)
n = 1
while True:
    conn, _ = srv.accept()
    log.write("accept %d\n" % now_ms())
    try:
        while n <= total:
            last = min(n + 19, total)
            conn.sendall("".join("%d\n" % i for i in range(n, last + 1)).encode())
            log.write("sent %d %d %d\n" % (n, last, now_ms()))
            n = last + 1
            time.sleep(0.01)
        log.write("done %d\n" % now_ms())
        while conn.recv(4096):
            pass
    except OSError:
        pass
    log.write("drop %d\n" % now_ms())
    conn.close()
