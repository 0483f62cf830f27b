"""Fake gateway VIPs for the health checkers: accept a TCP connection and close it.

Usage: listeners.py PORT ADDR... (runs until SIGTERM). Prints "ready" once every
socket is listening. Only loopback addresses are accepted.
"""

import ipaddress
import selectors
import signal
import socket
import sys


def main():
    port = int(sys.argv[1])
    sel = selectors.DefaultSelector()
    for a in sys.argv[2:]:
        if not ipaddress.ip_address(a).is_loopback:
            sys.exit(f"listeners.py: {a} is not a loopback address")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((a, port))
        s.listen(1024)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            try:
                while True:
                    c, _ = key.fileobj.accept()
                    c.close()
            except (BlockingIOError, InterruptedError):
                pass


if __name__ == "__main__":
    main()
