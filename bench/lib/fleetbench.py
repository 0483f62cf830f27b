"""Fleet benchmark for gslb (loopback only): three gslb instances on one three-member
etcd (Debian's etcd-server).

  1. write-to-served-everywhere latency: a PUT on one instance (round robin), timed
     from sending it until all three instances answer the new address (p50/p99),
  2. PUT throughput through etcd with 16 clients spread over the three instances,
  3. start-to-serving with N NameServices: an instance started on an empty data dir
     (loads from etcd), and one restarted on its local copy with etcd black-holed
     (SIGSTOP), each until /healthz is 200 and a stored name answers,
  4. DNS queries per CPU-second of one instance at a fixed rate, idle vs while 100
     writes/s land on the other instances (and reach this one through its watch).

etcd members run on CPU 1 with the clients; the gslb instances on CPU 0. Run through
bench/fleet.sh.
"""

import argparse
import json
import os
import re
import subprocess
import shutil
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import gen  # noqa: E402
from common import median, percentile  # noqa: E402

ETCD_ADDR = "127.0.0.60"
ETCD_CLIENT = [22379, 22380, 22381]
ETCD_PEER = [22390, 22391, 22392]
GSLB_ADDRS = ["127.0.0.61", "127.0.0.62", "127.0.0.63"]
DNS_PORT = 5353
# wrk's PUT names start here, far from the populated app0..app<names - 1>.
WRK_BASE = 50_000_000
API_PORT = 8080


def doc(i, ip_last=10):
    """A small NameService without health checks (the fleet, not the prober, is
    measured)."""
    return {"name": gen.name(i), "ttl": 30, "policy": "RoundRobin",
            "targets": [{"name": "dc1", "address": f"192.0.2.{ip_last}"}]}


class Fleet:
    def __init__(self, a):
        self.a = a
        self.work = a.work
        self.procs = common.Procs(os.path.join(self.work, "pids"))
        self.zones = os.path.join(self.work, "zones")
        self.etcd = [None] * 3
        self.gslb = [None] * 3
        self.apis = [common.Api(addr, API_PORT) for addr in GSLB_ADDRS]
        self.res = {}
        self.log = open(os.path.join(self.work, "bench.log"), "a")

    def say(self, msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        print(line, file=self.log, flush=True)

    # -------------------------------------------------------------- processes

    def endpoints(self):
        return [f"http://{ETCD_ADDR}:{p}" for p in ETCD_CLIENT]

    def start_etcd(self):
        cluster = ",".join(f"e{i}=http://{ETCD_ADDR}:{ETCD_PEER[i]}" for i in range(3))
        for i in range(3):
            d = os.path.join(self.work, f"etcd{i}")
            self.etcd[i] = self.procs.start(
                ["etcd", "--name", f"e{i}", "--data-dir", d,
                 "--listen-client-urls", f"http://{ETCD_ADDR}:{ETCD_CLIENT[i]}",
                 "--advertise-client-urls", f"http://{ETCD_ADDR}:{ETCD_CLIENT[i]}",
                 "--listen-peer-urls", f"http://{ETCD_ADDR}:{ETCD_PEER[i]}",
                 "--initial-advertise-peer-urls", f"http://{ETCD_ADDR}:{ETCD_PEER[i]}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new",
                 "--initial-cluster-token", "gslb-fleet-bench",
                 "--quota-backend-bytes", str(4 << 30), "--log-level", "warn"],
                os.path.join(self.work, f"etcd{i}.log"), cpu=common.CLIENT_CPU)
        deadline = time.monotonic() + 30
        while True:
            ok = 0
            for p in ETCD_CLIENT:
                try:
                    import http.client
                    c = http.client.HTTPConnection(ETCD_ADDR, p, timeout=1)
                    c.request("GET", "/health")
                    if b'"true"' in c.getresponse().read():
                        ok += 1
                except OSError:
                    pass
            if ok == 3:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("etcd did not become healthy")
            time.sleep(0.2)

    def signal_etcd(self, sig):
        for p in self.etcd:
            os.kill(p.pid, sig)

    def data(self, i):
        return os.path.join(self.work, f"gslb{i}")

    def spawn(self, i):
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        env.pop("GSLB_API_TOKEN", None)
        argv = [self.a.gslb, "serve", "--dns-listen", f"{GSLB_ADDRS[i]}:{DNS_PORT}",
                "--api-listen", f"{GSLB_ADDRS[i]}:{API_PORT}", "--data-dir", self.data(i),
                "--zones-dir", self.zones, "--instance", f"dc{i + 1}"]
        for e in self.endpoints():
            argv += ["--etcd-endpoint", e]
        t0 = time.monotonic()
        self.gslb[i] = self.procs.start(argv, os.path.join(self.work, f"gslb{i}.log"),
                                        cpu=common.SERVER_CPU, env=env)
        return t0

    def wait_serving(self, i, t0, probe, timeout=180):
        healthy = None
        while True:
            if self.gslb[i].poll() is not None:
                raise RuntimeError(f"gslb {i} exited: "
                                   f"{open(os.path.join(self.work, f'gslb{i}.log')).read()[-600:]}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"gslb {i} not serving after {timeout} s")
            if healthy is None and self.apis[i].healthz() == 200:
                healthy = time.monotonic() - t0
            if healthy is not None:
                try:
                    rc, addrs, _ = common.dns_query(GSLB_ADDRS[i], DNS_PORT, probe, 1, timeout=0.2)
                    if rc == "NOERROR" and addrs:
                        return healthy, time.monotonic() - t0
                except OSError:
                    pass
            time.sleep(0.01)

    def answers(self, i, name):
        try:
            return common.dns_query(GSLB_ADDRS[i], DNS_PORT, name, 1, timeout=0.5)[1]
        except OSError:
            return None

    # -------------------------------------------------------------- phases

    def write_to_served(self):
        n = self.a.writes
        lat = []
        for k in range(n):
            i = k % 3
            ip = 10 + k % 200
            name = gen.name(10_000_000 + k % 500)
            want = [f"192.0.2.{ip}"]
            d = doc(0, ip)
            d["name"] = name
            t0 = time.monotonic()
            self.apis[i].put_ns(d)
            pending = set(range(3))
            while pending:
                pending = {j for j in pending if self.answers(j, name) != want}
                if time.monotonic() - t0 > 5:
                    raise RuntimeError(f"{name} not served everywhere within 5 s")
            lat.append(time.monotonic() - t0)
        lat.sort()
        self.res["served"] = {"writes": n, "p50_ms": percentile(lat, 50) * 1e3,
                              "p99_ms": percentile(lat, 99) * 1e3, "max_ms": lat[-1] * 1e3}
        self.say(f"write to served by all three: {n} writes, p50 {self.res['served']['p50_ms']:.1f} ms, "
                 f"p99 {self.res['served']['p99_ms']:.1f} ms, max {self.res['served']['max_ms']:.1f} ms")

    def put_throughput(self, start, count, deadline):
        """16 clients over the three instances; returns (done, seconds)."""
        lock = threading.Lock()
        state = {"k": start, "done": 0, "err": None}
        t0 = time.monotonic()

        def worker(c):
            api = self.apis[c % 3]
            while time.monotonic() < deadline:
                with lock:
                    k = state["k"]
                    if k >= start + count:
                        return
                    state["k"] += 1
                try:
                    api.put_ns(doc(k, 10 + k % 200))
                except Exception as e:      # reported, not hidden
                    state["err"] = str(e)
                    return
                with lock:
                    state["done"] += 1

        ts = [threading.Thread(target=worker, args=(c,)) for c in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if state["err"]:
            raise RuntimeError(f"a PUT failed: {state['err']}")
        return state["done"], time.monotonic() - t0

    def cpu_split(self):
        """CPU seconds so far of the gslb instances, the etcd members and this client."""
        t = os.times()
        return {"gslb": sum(common.cpu_seconds(p.pid) for p in self.gslb),
                "etcd": sum(common.cpu_seconds(p.pid) for p in self.etcd),
                "client": t.user + t.system}

    def etcd_revision(self):
        """etcd's current revision (every write transaction moves it by one)."""
        import urllib.request
        req = urllib.request.Request(self.endpoints()[0] + "/v3/kv/range", method="POST",
                                     data=b'{"key": "AA==", "limit": 1}')
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(json.load(r)["header"]["revision"])

    def put_throughput_wrk(self, base):
        """16 connections over the three instances from three single-threaded wrk
        processes (bench/lib/put.lua: every request a new name, app<base + ...>);
        returns (done, seconds)."""
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "put.lua")
        procs, t0 = [], time.monotonic()
        for i, conns in enumerate([6, 5, 5]):
            env = dict(os.environ, PUT_BASE=str(base + i * 10_000_000))
            argv = ["taskset", "-c", common.CLIENT_CPU, "wrk", "-t1", f"-c{conns}",
                    f"-d{self.a.put_seconds:g}s", "--timeout", "10s", "-s", script,
                    f"http://{GSLB_ADDRS[i]}:{API_PORT}"]
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        done, cpu = 0, 0.0
        for p in procs:
            out, _ = p.communicate()
            m = re.search(r"(\d+) requests in", out)
            if p.returncode != 0 or not m:
                raise RuntimeError(f"wrk failed: {out[-600:]}")
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            errs = re.search(r"Socket errors: (.*)", out)
            if bad or errs:
                raise RuntimeError(f"wrk: a PUT failed: {out[-600:]}")
            done += int(m.group(1))
        return done, time.monotonic() - t0

    def throughput(self):
        r0 = self.etcd_revision()
        c0 = self.cpu_split()
        if self.a.client == "wrk":
            k0 = os.times()
            done, wall = self.put_throughput_wrk(WRK_BASE)
            k1 = os.times()
            client = (k1.children_user + k1.children_system) - (k0.children_user + k0.children_system)
        else:
            done, wall = self.put_throughput(0, 10**9, time.monotonic() + self.a.put_seconds)
            client = None
        c1 = self.cpu_split()
        if client is not None:
            c1["client"] = c0["client"] + client
        txns = self.etcd_revision() - r0
        # Where the CPU went, per write: which of the two cores' tenants is the limit.
        per = {k: (c1[k] - c0[k]) / max(done, 1) * 1e6 for k in c0}
        self.res["put"] = {"writes": done, "seconds": round(wall, 2), "per_s": done / wall,
                           "cpu_us_per_write": per, "etcd_transactions": txns}
        self.say(f"PUT through etcd, 16 clients over 3 instances: {done} in {wall:.1f} s = {done / wall:.0f}/s; "
                 f"CPU per write: gslb x3 {per['gslb']:.0f} us, etcd x3 {per['etcd']:.0f} us, "
                 f"client {per['client']:.0f} us; {txns} etcd transactions "
                 f"({done / max(txns, 1):.1f} writes each)")
        return done

    def populate(self, have):
        if self.a.client == "wrk":
            # wrk's names lie in a range of their own (counted in "names" below).
            self.res["wrk_names"], have = have, 0
        n = self.a.names
        done, wall = self.put_throughput(have, n - have, time.monotonic() + self.a.put_deadline)
        total = have + done
        self.say(f"populated {total} of {n} NameServices ({done} more in {wall:.0f} s)")
        self.res["names"] = total + self.res.get("wrk_names", 0)
        return total

    def start_to_serving(self, total):
        probe = gen.name(total - 1)
        # Wait until instance 2 has everything (its local copy is then complete).
        deadline = time.monotonic() + 120
        while self.answers(2, probe) is None or not self.answers(2, probe):
            if time.monotonic() > deadline:
                raise RuntimeError("instance 3 never served the last name")
            time.sleep(0.1)
        runs_etcd, runs_copy = [], []
        for _ in range(self.a.restarts):
            # From etcd: an empty data dir.
            self.procs.stop(self.gslb[2], timeout=60)
            shutil.rmtree(self.data(2), ignore_errors=True)
            t0 = self.spawn(2)
            h, s = self.wait_serving(2, t0, probe)
            runs_etcd.append({"healthz_s": h, "serving_s": s, "rss_mib": common.rss_mib(self.gslb[2].pid)})
            self.say(f"start from etcd with {self.res['names']} names: /healthz {h:.2f} s, serving {s:.2f} s")
            # From the local copy, etcd black-holed.
            self.procs.stop(self.gslb[2], timeout=60)
            self.signal_etcd(signal.SIGSTOP)
            try:
                t0 = self.spawn(2)
                h, s = self.wait_serving(2, t0, probe)
            finally:
                self.signal_etcd(signal.SIGCONT)
            runs_copy.append({"healthz_s": h, "serving_s": s})
            self.say(f"start from the local copy, etcd black-holed: /healthz {h:.2f} s, serving {s:.2f} s")
        self.res["start_etcd"] = {"runs": runs_etcd, "serving_s": median([r["serving_s"] for r in runs_etcd]),
                                  "healthz_s": median([r["healthz_s"] for r in runs_etcd])}
        self.res["start_copy"] = {"runs": runs_copy, "serving_s": median([r["serving_s"] for r in runs_copy]),
                                  "healthz_s": median([r["healthz_s"] for r in runs_copy])}
        t0 = time.monotonic()
        while self.apis[2].healthz() != 200 or time.monotonic() - t0 < 3:
            time.sleep(0.1)

    def writer(self, total, rate, stop):
        """~rate PUTs/s on instances 1 and 2 (round robin), each changing a name."""
        k = 0
        t0 = time.monotonic()
        while not stop.is_set():
            due = t0 + k / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            d = doc((k * 7919) % total, 10 + k % 2)
            self.apis[1 + k % 2].put_ns(d)
            k += 1
        return k

    def dns_cost(self, total):
        qfile = os.path.join(self.work, "queries.bin")
        gen.write_queries(qfile, total, 100_000, seed=5)
        secs, rate = self.a.dns_seconds, self.a.qps
        out = {}
        for label, writes in [("idle", 0), ("writes", self.a.write_rate)] * self.a.dns_rounds:
            stop = threading.Event()
            wt = None
            if writes:
                wt = threading.Thread(target=self.writer, args=(total, writes, stop))
                wt.start()
                time.sleep(1)
            pid = self.gslb[0].pid
            c0 = common.cpu_seconds(pid)
            m = common.dnsperf(GSLB_ADDRS[0], DNS_PORT, qfile, secs, rate=rate)
            cpu = common.cpu_seconds(pid) - c0
            stop.set()
            if wt:
                wt.join()
            qpc = m["completed"] / cpu if cpu > 0 else float("nan")
            out.setdefault(label, []).append(qpc)
            self.say(f"DNS at {rate} q/s, {label}: {m['completed']} answered, lost {m['lost']}, "
                     f"{cpu:.2f} CPU-s = {qpc:.0f} q/CPU-s")
        self.res["dns"] = {k: median(v) for k, v in out.items()}
        self.res["dns"]["ratio"] = self.res["dns"]["writes"] / self.res["dns"]["idle"]

    def run(self):
        os.makedirs(self.zones, exist_ok=True)
        gen.write_gslb_zone(os.path.join(self.zones, f"{gen.ZONE}.zone"))
        self.res["machine"] = common.machine_info()
        try:
            self.start_etcd()
            for i in range(3):
                t0 = self.spawn(i)
                while self.apis[i].healthz() != 200:
                    if self.gslb[i].poll() is not None or time.monotonic() - t0 > 30:
                        raise RuntimeError(f"gslb {i} did not become healthy")
                    time.sleep(0.02)
            self.write_to_served()
            have = self.throughput()
            total = self.populate(have)
            self.start_to_serving(total)
            self.dns_cost(total)
        finally:
            try:
                self.signal_etcd(signal.SIGCONT)
            except (OSError, AttributeError):
                pass
            self.procs.stop_all()
        self.res["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        md = render(self.res)
        print(md)
        with open(os.path.join(self.work, "results.md"), "w") as f:
            f.write(md)
        with open(os.path.join(self.work, "results.json"), "w") as f:
            json.dump(self.res, f, indent=1)


def render(r):
    m = r["machine"]
    s, p, d = r["served"], r["put"], r["dns"]
    return "\n".join([
        f"Machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}; load average "
        f"{' '.join(m['loadavg_start'])} at start, {' '.join(m['loadavg_end'])} at end; {m['date']}.",
        "",
        "| measure | result | aim |",
        "| --- | --- | --- |",
        f"| write to served by all 3 instances, p50 / p99 ({s['writes']} writes) | "
        f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} ms | p99 <= 100 ms |",
        f"| PUT through etcd, 16 clients | {p['per_s']:.0f}/s | >= 1,000/s |",
        f"| start to serving, {r['names']} names, from etcd (/healthz) | "
        f"{r['start_etcd']['serving_s']:.2f} s ({r['start_etcd']['healthz_s']:.2f} s) | <= 3 s |",
        f"| start to serving, local copy, etcd black-holed (/healthz) | "
        f"{r['start_copy']['serving_s']:.2f} s ({r['start_copy']['healthz_s']:.2f} s) | <= 3 s |",
        f"| DNS q/CPU-s, idle / with writes (ratio) | {d['idle']:.0f} / {d['writes']:.0f} "
        f"({d['ratio']:.3f}) | within 3% |",
        "",
    ])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--gslb", required=True)
    ap.add_argument("--writes", type=int, default=1000, help="writes timed to served-everywhere")
    ap.add_argument("--put-seconds", type=float, default=20)
    ap.add_argument("--names", type=int, default=100_000)
    ap.add_argument("--put-deadline", type=float, default=900)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--qps", type=int, default=20_000)
    ap.add_argument("--dns-seconds", type=int, default=10)
    ap.add_argument("--dns-rounds", type=int, default=3)
    ap.add_argument("--write-rate", type=int, default=100)
    ap.add_argument("--client", choices=["wrk", "python"], default="wrk",
                    help="the PUT/s client: wrk (C, epoll; bench/lib/put.lua) or 16 Python "
                         "threads (their CPU shares the etcd members' core)")
    a = ap.parse_args()
    Fleet(a).run()


if __name__ == "__main__":
    main()
