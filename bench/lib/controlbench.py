"""Control-plane benchmark for gslb (loopback only):

  1. durable PUT throughput with 16 concurrent clients (new names, fresh store),
  2. start-to-serving with N NameServices in the store (spawn -> /healthz 200 and a
     DNS answer for a stored name), after a clean SIGTERM restart,
  3. DNS p99 latency at a fixed query rate, idle vs while 1,000 writes/s land.

gslb is pinned to CPU 0 (DNS, API and prober share it); dnsperf, the API clients and
the fake gateway VIPs run on CPU 1. Run through bench/control.sh.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import gen  # noqa: E402
from common import median  # noqa: E402

ADDR = "127.0.0.40"
DNS_PORT = 5353
API_PORT = 8080


class Control:
    def __init__(self, a):
        self.a = a
        self.work = a.work
        self.procs = common.Procs(os.path.join(self.work, "pids"))
        self.d = os.path.join(self.work, "gslb")
        self.zones = os.path.join(self.d, "zones")
        self.data = os.path.join(self.d, "data")
        self.api = common.Api(ADDR, API_PORT)
        self.proc = None
        self.res = {}
        self.log = open(os.path.join(self.work, "bench.log"), "a")

    def say(self, msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        print(line, file=self.log, flush=True)

    def start_listeners(self):
        log = os.path.join(self.work, "listeners.log")
        p = self.procs.start([sys.executable, os.path.join(os.path.dirname(__file__), "listeners.py"),
                              str(gen.HC_PORT)] + gen.vips(), log, cpu=common.CLIENT_CPU)
        deadline = time.monotonic() + 10
        while "ready" not in open(log).read():
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("health listeners did not start")
            time.sleep(0.1)

    def spawn(self):
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        env.pop("GSLB_API_TOKEN", None)
        t0 = time.monotonic()
        self.proc = self.procs.start(
            [self.a.gslb, "serve", "--dns-listen", f"{ADDR}:{DNS_PORT}",
             "--api-listen", f"{ADDR}:{API_PORT}", "--data-dir", self.data, "--zones-dir", self.zones],
            os.path.join(self.d, "server.log"), cpu=common.SERVER_CPU, env=env)
        return t0

    def wait_serving(self, t0, probe_name, timeout=120):
        """Seconds from spawn until /healthz is 200 and probe_name gets an A answer."""
        healthy_at = None
        while True:
            now = time.monotonic()
            if self.proc.poll() is not None:
                raise RuntimeError(f"gslb exited {self.proc.returncode}: "
                                   f"{open(os.path.join(self.d, 'server.log')).read()[-600:]}")
            if now - t0 > timeout:
                raise RuntimeError(f"not serving {timeout} s after start")
            if healthy_at is None and self.api.healthz() == 200:
                healthy_at = time.monotonic() - t0
            if healthy_at is not None:
                try:
                    rc, addrs, _ = common.dns_query(ADDR, DNS_PORT, probe_name, 1, timeout=0.2)
                    if rc == "NOERROR" and addrs:
                        return healthy_at, time.monotonic() - t0
                except OSError:
                    pass
            time.sleep(0.01)

    def stop(self):
        t = time.monotonic()
        self.procs.stop(self.proc, timeout=60)
        return time.monotonic() - t, self.proc.returncode

    # -------------------------------------------------------------- phases

    def put_throughput(self):
        secs = self.a.put_seconds
        docs = (gen.nameservice(i, "RoundRobin") for i in range(10**9))
        done, wall, lat = common.put_parallel(self.api, docs, clients=16,
                                              deadline=time.monotonic() + secs)
        self.res["put"] = {"writes": done, "seconds": round(wall, 2), "per_s": done / wall,
                           "p50_ms": common.percentile(lat, 50) * 1e3,
                           "p99_ms": common.percentile(lat, 99) * 1e3}
        self.say(f"PUT, 16 clients, fresh store: {done} in {wall:.1f} s = {done / wall:.0f}/s "
                 f"(p50 {self.res['put']['p50_ms']:.1f} ms, p99 {self.res['put']['p99_ms']:.1f} ms)")
        return done

    def populate(self, have):
        n = self.a.names
        docs = (gen.nameservice(i, "RoundRobin") for i in range(have, n))
        done, wall, _ = common.put_parallel(self.api, docs, clients=16,
                                            deadline=time.monotonic() + self.a.put_deadline)
        total = have + done
        self.say(f"populated {total} of {n} NameServices ({done} more in {wall:.0f} s, {done / max(wall, 1e-9):.0f}/s)")
        self.res["names"] = total
        return total

    def restarts(self, total):
        probe = gen.name(total - 1)
        runs = []
        for k in range(self.a.restarts):
            down, rc = self.stop()
            t0 = self.spawn()
            h, serving = self.wait_serving(t0, probe)
            rss = common.rss_mib(self.proc.pid)
            runs.append({"healthz_s": h, "serving_s": serving, "stop_s": down, "exit": rc, "rss_mib": rss})
            self.say(f"restart {k + 1}: SIGTERM took {down:.2f} s (exit {rc}); /healthz after {h:.2f} s, "
                     f"DNS answer for {probe} after {serving:.2f} s; RSS {rss:.0f} MiB")
        self.res["start"] = {"runs": runs, "serving_s": median([r["serving_s"] for r in runs]),
                             "healthz_s": median([r["healthz_s"] for r in runs]),
                             "rss_mib": median([r["rss_mib"] for r in runs])}

    def wait_healthy(self, total):
        deadline = time.monotonic() + 60
        sample = sorted({0, total // 2, total - 1})
        while time.monotonic() < deadline:
            hs = []
            for i in sample:
                st, body = self.api.get_ns(gen.name(i))
                hs += [t.get("health") for t in (body or {}).get("status", {}).get("targets", [])]
            if hs and all(h == "Healthy" for h in hs):
                return
            time.sleep(0.5)
        self.say("warning: targets not all Healthy after 60 s; latency runs go on")

    def latency_under_writes(self, total):
        """Alternating idle / under-writes runs at the same fixed query rate; medians."""
        qfile = os.path.join(self.work, "q.bin")
        gen.write_queries(qfile, total, 200_000, seed=5)
        rate, secs = self.a.qps, self.a.lat_seconds
        runs = {"idle": [], "writes": []}
        wrates, wp99, cpus = [], [], []
        for k in range(self.a.lat_rounds):
            m = common.dnsperf(ADDR, DNS_PORT, qfile, secs, rate=rate, verbose=True,
                               out=os.path.join(self.work, "idle"))
            runs["idle"].append(m)
            stop = threading.Event()
            writes = {"n": 0, "lat": []}
            writer = threading.Thread(target=self.writer, args=(total, self.a.write_rate, stop, writes))
            c0 = common.cpu_seconds(self.proc.pid)
            t0 = time.monotonic()
            writer.start()
            time.sleep(1)       # let the write rate settle before measuring
            m = common.dnsperf(ADDR, DNS_PORT, qfile, secs, rate=rate, verbose=True,
                               out=os.path.join(self.work, "busy"))
            runs["writes"].append(m)
            stop.set()
            writer.join()
            wall = time.monotonic() - t0
            cpus.append((common.cpu_seconds(self.proc.pid) - c0) / wall)
            wrates.append(writes["n"] / wall)
            wp99.append(common.percentile(sorted(writes["lat"]), 99) * 1e3)
            i, b = runs["idle"][-1]["latencies"], m["latencies"]
            self.say(f"latency round {k + 1} at {rate} q/s: idle p50 {common.percentile(i, 50) * 1e6:.0f} us "
                     f"p99 {common.percentile(i, 99) * 1e6:.0f} us; with {wrates[-1]:.0f} writes/s "
                     f"p50 {common.percentile(b, 50) * 1e6:.0f} us p99 {common.percentile(b, 99) * 1e6:.0f} us "
                     f"(server CPU {cpus[-1]:.0%})")
        out = {}
        for key, ms in runs.items():
            out[key] = {"qps": median([m["qps"] for m in ms]),
                        "p50_us": median([common.percentile(m["latencies"], 50) * 1e6 for m in ms]),
                        "p99_us": median([common.percentile(m["latencies"], 99) * 1e6 for m in ms]),
                        "lost": sum(m["lost"] for m in ms)}
        out["write_rate"] = median(wrates)
        out["write_p99_ms"] = median(wp99)
        out["server_cpu_under_writes"] = median(cpus)
        self.res["latency"] = out

    def writer(self, total, rate, stop, writes):
        """~rate PUTs/s spread over 16 clients; each replaces an existing name, flipping
        its ttl so every write changes the published snapshot."""
        lock = threading.Lock()
        state = {"k": 0}
        t0 = time.monotonic()

        def one():
            while not stop.is_set():
                with lock:
                    k = state["k"]
                    state["k"] += 1
                due = t0 + k / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                doc = gen.nameservice((k * 7919) % total, "RoundRobin")
                doc["ttl"] = 30 + (k % 2)
                t = time.monotonic()
                self.api.put_ns(doc)
                with lock:
                    writes["n"] += 1
                    writes["lat"].append(time.monotonic() - t)

        ts = [threading.Thread(target=one) for _ in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def run(self):
        os.makedirs(self.zones, exist_ok=True)
        gen.write_gslb_zone(os.path.join(self.zones, f"{gen.ZONE}.zone"))
        self.res["machine"] = common.machine_info()
        self.start_listeners()
        try:
            t0 = self.spawn()
            while self.api.healthz() != 200:
                if self.proc.poll() is not None or time.monotonic() - t0 > 30:
                    raise RuntimeError("gslb did not become healthy with an empty store")
                time.sleep(0.02)
            self.res["empty_healthz_s"] = time.monotonic() - t0
            have = self.put_throughput()
            total = self.populate(have)
            self.restarts(total)
            self.wait_healthy(total)
            self.latency_under_writes(total)
        finally:
            self.procs.stop_all()
        self.res["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        md = render(self.res, self.a)
        print(md)
        with open(os.path.join(self.work, "results.md"), "w") as f:
            f.write(md)
        with open(os.path.join(self.work, "results.json"), "w") as f:
            json.dump(self.res, f, indent=1)


def render(r, a):
    m = r["machine"]
    out = [f"Machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}; load average "
           f"{' '.join(m['loadavg_start'])} at start, {' '.join(m['loadavg_end'])} at end; {m['date']}.",
           f"gslb pinned to CPU {common.SERVER_CPU}; clients and dnsperf on CPU {common.CLIENT_CPU}.", "",
           "| measurement | result | goal | verdict |", "|---|---:|---:|---|"]

    def row(what, val, goal, ok, delta):
        out.append(f"| {what} | {val} | {goal} | {'met' if ok else 'NOT met (' + delta + ')'} |")

    p = r["put"]
    row("durable PUT, 16 clients (fresh store)", f"{p['per_s']:,.0f}/s (p99 {p['p99_ms']:.1f} ms)",
        ">= 2,000/s", p["per_s"] >= 2000, f"{(p['per_s'] / 2000 - 1) * 100:+.0f}%")
    s = r["start"]
    names = r["names"]
    row(f"start-to-serving, {names:,} NameServices (median of {len(s['runs'])})",
        f"{s['serving_s']:.2f} s (/healthz {s['healthz_s']:.2f} s)", "<= 3 s",
        s["serving_s"] <= 3 and names >= a.names, f"{(s['serving_s'] / 3 - 1) * 100:+.0f}%"
        + ("" if names >= a.names else f"; only {names:,} of {a.names:,} names"))
    out.append(f"| RSS after restart, {names:,} NameServices | {s['rss_mib']:.0f} MiB | | |")
    lt = r["latency"]
    ratio = lt["writes"]["p99_us"] / lt["idle"]["p99_us"]
    row(f"DNS p99 at {a.qps:,} q/s: idle vs {lt['write_rate']:,.0f} writes/s",
        f"{lt['idle']['p99_us']:.0f} µs vs {lt['writes']['p99_us']:.0f} µs ({ratio:.2f}x)",
        "<= 2x idle", ratio <= 2 and lt["write_rate"] >= 0.9 * a.write_rate,
        f"{ratio:.2f}x" + ("" if lt["write_rate"] >= 0.9 * a.write_rate
                           else f"; only {lt['write_rate']:.0f} writes/s achieved"))
    out.append(f"| PUT p99 while 1,000 writes/s land; gslb CPU then | {lt['write_p99_ms']:.1f} ms; "
               f"{lt['server_cpu_under_writes']:.0%} | | |")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--gslb", required=True)
    p.add_argument("--names", type=int, default=100_000)
    p.add_argument("--put-seconds", type=int, default=10)
    p.add_argument("--put-deadline", type=int, default=300)
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--qps", type=int, default=20_000, help="fixed DNS rate for the latency runs")
    p.add_argument("--write-rate", type=int, default=1000)
    p.add_argument("--lat-seconds", type=int, default=10)
    p.add_argument("--lat-rounds", type=int, default=3, help="idle/under-writes pairs")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    Control(a).run()


if __name__ == "__main__":
    main()
