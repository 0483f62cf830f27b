"""Process control, /proc sampling, dnsperf runs, a tiny DNS client and the gslb API
client shared by the benchmark scripts. Standard library only."""

import http.client
import ipaddress
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"      # the server under test
CLIENT_CPU = "1"      # dnsperf, health listeners, API clients
NICE = "-10"


# ---------------------------------------------------------------- processes

class Procs:
    """Every process we start, recorded in a pid file so that the shell's EXIT trap
    can stop them even if Python dies; stopped by PID, TERM then KILL."""

    def __init__(self, pidfile):
        self.pidfile = pidfile
        self.procs = []

    def start(self, argv, log, cpu=None, env=None, cwd=None):
        if cpu is not None:
            # Pinned, and at nice -10 so that a busy shared machine (compilers at nice 0)
            # disturbs the measured processes less; CPU accounting is unaffected.
            argv = ["taskset", "-c", cpu, "nice", "-n", NICE] + list(argv)
        f = open(log, "ab")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, cwd=cwd)
        f.close()
        self.procs.append(p)
        with open(self.pidfile, "a") as pf:
            pf.write(f"{p.pid} {start_time(p.pid)}\n")
        return p

    def stop(self, p, timeout=10):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            self.stop(p)


def start_time(pid):
    """Start time of pid in clock ticks since boot: (pid, start time) names a process
    even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return "0"


def cpu_seconds(pid):
    """utime + stime of all threads of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpus(pid):
    """The set of Cpus_allowed_list values over all threads of pid (a server that
    re-pins its own threads would skew the one-CPU comparison)."""
    out = set()
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        out.add(line.split()[1])
        except OSError:
            pass
    return out


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_port_free(addr, port, proto=socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, proto)
    try:
        s.bind((addr, port))
    except OSError as e:
        raise RuntimeError(f"{addr}:{port} is in use ({e}); is an earlier run still alive?")
    finally:
        s.close()


# ---------------------------------------------------------------- dnsperf

DNSPERF_LOAD = ["-c", "4", "-q", "256"]     # clients (sockets), max outstanding


def dnsperf(addr, port, qfile, seconds, rate=None, verbose=False, out=None):
    """Run dnsperf pinned to CLIENT_CPU; returns a dict with qps, sent, lost, rcodes,
    and (verbose) the sorted per-query latencies in seconds."""
    argv = ["taskset", "-c", CLIENT_CPU, "nice", "-n", NICE, "dnsperf", "-B", "-d", qfile, "-s", addr,
            "-p", str(port), "-l", str(seconds), "-t", "2"] + DNSPERF_LOAD
    if rate:
        argv += ["-Q", str(int(rate))]
    if verbose:
        argv += ["-v"]
    outpath = out or "/dev/null"
    with open(outpath + ".stdout" if out else os.devnull, "w") as so:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE if not verbose else so,
                             stderr=subprocess.STDOUT, text=True)
        try:
            text, _ = p.communicate()
        except BaseException:       # SIGTERM/^C: do not leave dnsperf running
            p.kill()
            p.wait()
            raise
    text = text if not verbose else open(outpath + ".stdout").read()
    if p.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({p.returncode}): {text[-500:]}")
    res = parse_dnsperf(text)
    if verbose:
        lat = []
        for line in text.splitlines():
            if line.startswith("> "):
                parts = line.split()
                if parts[1] not in ("T", "I"):
                    lat.append(float(parts[-1]))
        lat.sort()
        res["latencies"] = lat
        os.unlink(outpath + ".stdout")
    return res


def parse_dnsperf(text):
    def num(pat, cast=float):
        m = re.search(pat, text)
        return cast(m.group(1)) if m else None
    rc = {}
    m = re.search(r"Response codes:\s+(.*)", text)
    if m:
        for code, n in re.findall(r"([A-Z]+) (\d+)", m.group(1)):
            rc[code] = int(n)
    return {
        "sent": num(r"Queries sent:\s+(\d+)", int),
        "completed": num(r"Queries completed:\s+(\d+)", int),
        "lost": num(r"Queries lost:\s+(\d+)", int),
        "qps": num(r"Queries per second:\s+([\d.]+)"),
        "runtime": num(r"Run time \(s\):\s+([\d.]+)"),
        "rcodes": rc,
    }


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


# ---------------------------------------------------------------- tiny DNS client

def dns_query(addr, port, qname, qtype, ecs=None, timeout=2.0):
    """One UDP query (EDNS, optional ECS (ip, prefix)); returns (rcode, [addresses],
    ecs_scope or None)."""
    qid = random.randrange(65536)
    hdr = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1)
    q = b"".join(bytes([len(l)]) + l.encode() for l in qname.split(".")) + b"\0"
    q += struct.pack("!HH", qtype, 1)
    opts = b""
    if ecs:
        ip, plen = ecs
        raw = ipaddress.ip_address(ip).packed[: (plen + 7) // 8]
        body = struct.pack("!HBB", 1, plen, 0) + raw
        opts = struct.pack("!HH", 8, len(body)) + body
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(opts)) + opts
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(hdr + q + opt, (addr, port))
        while True:
            data, _ = s.recvfrom(65535)
            if struct.unpack("!H", data[:2])[0] == qid:
                break
    finally:
        s.close()
    _, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", data[:12])
    rcode = flags & 0xF
    off = 12

    def skip_name(o):
        while True:
            n = data[o]
            if n == 0:
                return o + 1
            if n & 0xC0 == 0xC0:
                return o + 2
            o += n + 1

    for _ in range(qd):
        off = skip_name(off) + 4
    addrs, scope = [], None
    for i in range(an + ns + ar):
        off = skip_name(off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        rd = data[off:off + rdlen]
        if i < an and rtype == 1:
            addrs.append(socket.inet_ntoa(rd))
        if i < an and rtype == 28:
            addrs.append(socket.inet_ntop(socket.AF_INET6, rd))
        if rtype == 41:
            o = 0
            while o + 4 <= len(rd):
                code, ln = struct.unpack("!HH", rd[o:o + 4])
                if code == 8:
                    scope = rd[o + 7]
                o += 4 + ln
        off += rdlen
    return ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"][rcode] \
        if rcode < 6 else str(rcode), sorted(addrs), scope


# ---------------------------------------------------------------- gslb REST API

class Api:
    def __init__(self, host, port, token=None):
        self.host, self.port, self.token = host, port, token
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=60)
            self.local.c = c
        return c

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            c = self._conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.c = None
                if attempt == 2:
                    raise

    def put_ns(self, doc):
        st, body = self.request("PUT", f"/api/v1/nameservices/{doc['name']}", doc)
        if st not in (200, 201):
            raise RuntimeError(f"PUT {doc['name']}: {st} {body[:300]!r}")
        return st

    def get_ns(self, name):
        st, body = self.request("GET", f"/api/v1/nameservices/{name}")
        return st, (json.loads(body) if st == 200 else None)

    def healthz(self):
        try:
            c = http.client.HTTPConnection(self.host, self.port, timeout=1)
            c.request("GET", "/healthz")
            st = c.getresponse().status
            c.close()
            return st
        except OSError:
            return None


def put_parallel(api, docs, clients=16, deadline=None):
    """PUT every doc with `clients` concurrent keep-alive connections. Returns
    (done, seconds, latencies). Stops early (done < len(docs)) at the deadline."""
    it = iter(docs)
    lock = threading.Lock()
    done = [0]
    lat = []
    errors = []

    def worker():
        my = []
        while True:
            if deadline and time.monotonic() > deadline:
                break
            with lock:
                d = next(it, None)
            if d is None:
                break
            t = time.monotonic()
            try:
                api.put_ns(d)
            except Exception as e:      # reported, not hidden
                errors.append(str(e))
                break
            my.append(time.monotonic() - t)
        with lock:
            done[0] += len(my)
            lat.extend(my)

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} PUTs failed, first: {errors[0]}")
    return done[0], time.monotonic() - t0, sorted(lat)


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "loadavg_start": open("/proc/loadavg").read().split()[:3],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
