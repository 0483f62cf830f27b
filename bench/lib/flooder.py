"""A lean random-subdomain flooder, as an attacker runs one: it sends the queries of
a dnsperf binary file (-B format: 2-byte length, then the message) from one source
address at a fixed rate and never waits for an answer (answers are left unread, the
kernel drops them). Unlike dnsperf it keeps no table of outstanding queries, so on
a 2-core machine the flood costs the measuring client next to it little CPU.

    flooder.py SRC DST PORT QFILE SECONDS RATE   -> prints {"sent": N, "seconds": S}
"""

import json
import socket
import struct
import sys
import time


def main():
    src, dst, port, qfile, seconds, rate = sys.argv[1:7]
    port, seconds, rate = int(port), float(seconds), int(rate)
    data = open(qfile, "rb").read()
    msgs, i = [], 0
    while i + 2 <= len(data):
        (n,) = struct.unpack_from("!H", data, i)
        msgs.append(data[i + 2:i + 2 + n])
        i += 2 + n
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    s.bind((src, 0))
    s.connect((dst, port))
    send = s.send
    burst = max(1, rate // 200)       # 200 bursts per second
    t0 = time.monotonic()
    sent, k, nmsgs = 0, 0, len(msgs)
    while True:
        now = time.monotonic() - t0
        if now >= seconds:
            break
        due = int(now * rate) + burst
        while sent < due:
            try:
                send(msgs[k])
            except OSError:        # ECONNREFUSED from an earlier ICMP, a full buffer
                pass
            sent += 1
            k = k + 1 if k + 1 < nmsgs else 0
        time.sleep(1 / 200)
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - t0}))


if __name__ == "__main__":
    main()
