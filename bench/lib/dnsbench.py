"""DNS benchmark: gslb against knotd (static) and gdnsd (health-checked dynamic
resources) on identical data, one CPU for the server, one for dnsperf.

Run through bench/dns.sh, which installs the tools and builds gslb. Prints a
Markdown table and writes it, with the raw numbers, to the work directory.
"""

import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import gen  # noqa: E402
from common import median  # noqa: E402

DNS_PORT = 5353
API_PORT = 8080


class Server:
    def __init__(self, label, kind, addr, n, expect, qfile, variant=None):
        self.label, self.kind, self.addr, self.n = label, kind, addr, n
        self.expect = expect            # all3 | one | nearest
        self.qfile = qfile
        self.variant = variant
        self.proc = None
        self.error = None
        self.rounds = []
        self.latency = None
        self.rss = None
        self.note = ""
        self.idle_cpu = None

    @property
    def pid(self):
        return self.proc.pid


class Bench:
    def __init__(self, args):
        self.a = args
        self.work = args.work
        self.procs = common.Procs(os.path.join(self.work, "pids"))
        self.next_ip = 20
        self.log = open(os.path.join(self.work, "bench.log"), "a")
        self.listener = None

    def say(self, msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        print(line, file=self.log, flush=True)

    def ip(self):
        self.next_ip += 1
        return f"127.0.0.{self.next_ip}"

    # ------------------------------------------------------------ peers

    def start_listeners(self):
        log = os.path.join(self.work, "listeners.log")
        self.listener = self.procs.start(
            [sys.executable, os.path.join(os.path.dirname(__file__), "listeners.py"),
             str(gen.HC_PORT)] + gen.vips(), log, cpu=common.CLIENT_CPU)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "ready" in open(log).read():
                return
            if self.listener.poll() is not None:
                raise RuntimeError(f"health listeners died: {open(log).read()[-400:]}")
            time.sleep(0.1)
        raise RuntimeError("health listeners did not start")

    def start_knot(self, s, ecs, cookies=False):
        d = os.path.join(self.work, s.label)
        os.makedirs(d, exist_ok=True)
        zf = os.path.join(d, f"{gen.ZONE}.zone")
        gen.write_static_zone(zf, s.n)
        conf = os.path.join(d, "knot.conf")
        gen.write_knot_conf(conf, d, f"{s.addr}:{DNS_PORT}", zf, ecs, cookies)
        common.wait_port_free(s.addr, DNS_PORT)
        s.proc = self.procs.start(["knotd", "-c", conf], os.path.join(d, "server.log"),
                                  cpu=common.SERVER_CPU)

    def start_gdnsd(self, s, kind):
        d = os.path.join(self.work, s.label)
        gen.write_gdnsd(d, f"{s.addr}:{DNS_PORT}", s.n, kind)
        common.wait_port_free(s.addr, DNS_PORT)
        s.proc = self.procs.start(["gdnsd", "-c", d, "start"], os.path.join(d, "server.log"),
                                  cpu=common.SERVER_CPU)

    # ------------------------------------------------------------ gslb

    def start_gslb(self, s, policy, topo, extra="", steer=None, binary=None):
        """`extra`: config lines; `steer`: service fields merged into every NameService
        (stickiness, slow start, ...); `binary`: another gslb build (the one without
        answer counting)."""
        d = os.path.join(self.work, s.label)
        zones = os.path.join(d, "zones")
        data = os.path.join(d, "data")
        os.makedirs(zones, exist_ok=True)
        gen.write_gslb_zone(os.path.join(zones, f"{gen.ZONE}.zone"))
        conf = os.path.join(d, "gslb.toml")
        gen.write_gslb_config(conf, topo, extra)
        common.wait_port_free(s.addr, DNS_PORT)
        common.wait_port_free(s.addr, API_PORT, proto=common.socket.SOCK_STREAM)
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        env.pop("GSLB_API_TOKEN", None)
        s.proc = self.procs.start(
            [binary or self.a.gslb, "serve", "--config", conf, "--dns-listen", f"{s.addr}:{DNS_PORT}",
             "--api-listen", f"{s.addr}:{API_PORT}", "--data-dir", data, "--zones-dir", zones],
            os.path.join(d, "server.log"), cpu=common.SERVER_CPU, env=env)
        api = common.Api(s.addr, API_PORT)
        deadline = time.monotonic() + 30
        while api.healthz() != 200:
            if s.proc.poll() is not None:
                raise RuntimeError(f"gslb exited {s.proc.returncode}: {self.tail(s)}")
            if time.monotonic() > deadline:
                raise RuntimeError("gslb /healthz not 200 after 30 s")
            time.sleep(0.1)
        docs = (dict(gen.nameservice(i, policy), **(steer or {})) for i in range(s.n))
        limit = time.monotonic() + self.a.put_deadline
        done, secs, _ = common.put_parallel(api, docs, clients=16, deadline=limit)
        self.say(f"  {s.label}: registered {done} NameServices in {secs:.1f} s "
                 f"({done / secs:.0f}/s, 16 clients)")
        if done < s.n:
            s.note = f"only {done} of {s.n} names registered in {self.a.put_deadline} s"
        s.registered = done
        # Targets start Pending; wait until a sample of names has every target Healthy.
        sample = sorted({0, 1, 2, done // 2, max(0, done - 1)})
        deadline = time.monotonic() + 30
        while True:
            states = []
            for i in sample:
                st, body = api.get_ns(gen.name(i))
                states += [t.get("health") for t in (body or {}).get("status", {}).get("targets", [])] \
                    if st == 200 else [f"HTTP {st}"]
            if states and all(h == "Healthy" for h in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"targets not Healthy 30 s after registration: {states[:6]}")
            time.sleep(0.5)

    def tail(self, s):
        try:
            return open(os.path.join(self.work, s.label, "server.log")).read()[-600:]
        except OSError:
            return ""

    # ------------------------------------------------------------ checks

    def check_answers(self, s):
        """The server answers the data set as expected before it is measured."""
        deadline = time.monotonic() + 60
        while True:
            try:
                common.dns_query(s.addr, DNS_PORT, gen.name(0), 1, timeout=0.5)
                break
            except OSError:
                if s.proc.poll() is not None:
                    raise RuntimeError(f"exited {s.proc.returncode}: {self.tail(s)}")
                if time.monotonic() > deadline:
                    raise RuntimeError("no DNS answer after 60 s")
                time.sleep(0.2)
        cpus = common.thread_cpus(s.pid)
        if cpus != {common.SERVER_CPU}:
            raise RuntimeError(f"threads allowed on CPUs {sorted(cpus)}, want only {common.SERVER_CPU}")
        n = getattr(s, "registered", s.n)
        for i in sorted({0, 1, n // 2, n - 1}):
            want = gen.expected_answers(i)
            if s.expect == "nearest":
                # 10.0.1.0/24 is mapped to REGIONS[1]: the answer is the dc2 target only.
                want = [gen.targets(i)[1][1]]
                rc, got, scope = common.dns_query(s.addr, DNS_PORT, gen.name(i), 1, ecs=("10.0.1.0", 24))
                ok = rc == "NOERROR" and got == want
                if ok and s.kind == "gslb" and scope != 24:
                    raise RuntimeError(f"{gen.name(i)} A with ECS 10.0.1.0/24: scope {scope}, want 24")
            else:
                rc, got, _ = common.dns_query(s.addr, DNS_PORT, gen.name(i), 1)
                ok = rc == "NOERROR" and (got == want if s.expect == "all3"
                                          else len(got) == 1 and got[0] in want)
            if not ok:
                raise RuntimeError(f"{gen.name(i)} A: got {rc} {got}, want ({s.expect}) {want}")
            rc, got, _ = common.dns_query(s.addr, DNS_PORT, gen.name(i), 28)
            if rc != "NOERROR" or got:
                raise RuntimeError(f"{gen.name(i)} AAAA: got {rc} {got}, want NODATA")
            rc, got, _ = common.dns_query(s.addr, DNS_PORT, gen.nx_name(i), 1)
            if rc != "NXDOMAIN":
                raise RuntimeError(f"{gen.nx_name(i)} A: got {rc}, want NXDOMAIN")

    # ------------------------------------------------------------ measuring

    def measure(self, s, seconds):
        c0 = common.cpu_seconds(s.pid)
        t0 = time.monotonic()
        r = common.dnsperf(s.addr, DNS_PORT, s.qfile, seconds)
        wall = time.monotonic() - t0
        cpu = common.cpu_seconds(s.pid) - c0
        r["cpu_share"] = cpu / wall
        r["q_per_cpu_s"] = r["completed"] / cpu if cpu > 0 else None
        r["lost_pct"] = 100.0 * r["lost"] / r["sent"] if r["sent"] else None
        # The mix is 95% NOERROR (A and NODATA AAAA) and 5% NXDOMAIN; anything else
        # (SERVFAIL, REFUSED, a skewed share) means the numbers are not comparable.
        rc = r["rcodes"]
        total = sum(rc.values()) or 1
        odd = {k: v for k, v in rc.items() if k not in ("NOERROR", "NXDOMAIN")}
        nx = 100.0 * rc.get("NXDOMAIN", 0) / total
        if odd or abs(nx - 5.0) > 1.0:
            msg = f"unexpected response codes {rc}"
            if msg not in s.note:
                s.note = (s.note + "; " if s.note else "") + msg
        return r

    def run_group(self, title, servers):
        self.say(f"== {title}")
        live = []
        for s, start in servers:
            try:
                self.say(f"  starting {s.label}")
                start()
                self.check_answers(s)
                live.append(s)
            except Exception as e:      # a broken server is reported, not fatal
                s.error = str(e).splitlines()[0][:200] if str(e) else repr(e)
                self.say(f"  {s.label}: NOT MEASURED: {s.error}")
                if s.proc:
                    self.procs.stop(s.proc)
        # Idle cost (health checks, timers) of every live server, measured together.
        if live:
            c0 = {s.label: common.cpu_seconds(s.pid) for s in live}
            t0 = time.monotonic()
            time.sleep(self.a.idle_seconds)
            wall = time.monotonic() - t0
            for s in live:
                s.idle_cpu = (common.cpu_seconds(s.pid) - c0[s.label]) / wall
        for r in range(self.a.rounds):
            order = live[r % len(live):] + live[:r % len(live)] if live else []
            for s in order:
                try:
                    m = self.measure(s, self.a.seconds)
                    s.rounds.append(m)
                    self.say(f"  round {r + 1} {s.label}: {m['qps']:.0f} q/s, cpu {m['cpu_share']:.2f}, "
                             f"{m['q_per_cpu_s']:.0f} q/cpu-s, lost {m['lost_pct']:.2f}%")
                except Exception as e:
                    s.error = f"round {r + 1}: {e}"[:200]
                    self.say(f"  {s.label}: {s.error}")
        lat_servers = []
        for s in live:
            if s.proc.poll() is not None:
                s.error = s.error or f"exited {s.proc.returncode} during the run"
                continue
            s.rss = common.rss_mib(s.pid)
            if median([m["qps"] for m in s.rounds]):
                lat_servers.append(s)
                s.lat_rounds = []
        # Latency at half of each server's own median max QPS, interleaved rounds too.
        for r in range(self.a.rounds):
            order = lat_servers[r % len(lat_servers):] + lat_servers[:r % len(lat_servers)] \
                if lat_servers else []
            for s in order:
                rate = max(100, median([m["qps"] for m in s.rounds]) / 2)
                try:
                    c0 = common.cpu_seconds(s.pid)
                    m = common.dnsperf(s.addr, DNS_PORT, s.qfile, self.a.lat_seconds, rate=rate,
                                       verbose=True, out=os.path.join(self.work, f"{s.label}.lat"))
                    cpu = common.cpu_seconds(s.pid) - c0
                except Exception as e:
                    s.error = f"latency run: {e}"[:200]
                    continue
                lat = m["latencies"]
                s.lat_rounds.append({"rate": rate, "n": len(lat), "qps": m["qps"],
                                     "p50": common.percentile(lat, 50),
                                     "p99": common.percentile(lat, 99),
                                     "q_per_cpu_s": m["completed"] / cpu if cpu > 0 else None})
                self.say(f"  latency round {r + 1} {s.label} @ {rate:.0f} q/s: "
                         f"p50 {s.lat_rounds[-1]['p50'] * 1e6:.0f} us, p99 {s.lat_rounds[-1]['p99'] * 1e6:.0f} us")
        for s in lat_servers:
            if s.lat_rounds:
                s.latency = {"rate": s.lat_rounds[0]["rate"],
                             "p50": median([x["p50"] for x in s.lat_rounds]),
                             "p99": median([x["p99"] for x in s.lat_rounds]),
                             "q_per_cpu_s": median([x["q_per_cpu_s"] for x in s.lat_rounds]),
                             "rounds": s.lat_rounds}
        for s in live:
            self.procs.stop(s.proc)

    # ------------------------------------------------------------ plan

    def plan(self):
        a = self.a
        q1k = os.path.join(self.work, "q-1k.bin")
        qecs = os.path.join(self.work, "q-ecs.bin")
        big = a.big_names
        qbig = os.path.join(self.work, f"q-{big}.bin")
        gen.write_queries(q1k, 1000, 200_000, seed=1)
        gen.write_queries(qecs, 1000, 200_000, ecs=True, seed=2)
        gen.write_queries(qbig, big, 200_000, seed=3)
        groups = []

        def mk(label, kind, n, expect, q, starter, *args):
            s = Server(label, kind, self.ip(), n, expect, q)
            return s, (lambda: starter(s, *args))

        use_gslb = not a.peers_only
        g = [mk("knotd", "knot", 1000, "all3", q1k, self.start_knot, False),
             mk("gdnsd-multifo", "gdnsd", 1000, "all3", q1k, self.start_gdnsd, "multifo"),
             mk("gdnsd-weighted", "gdnsd", 1000, "one", q1k, self.start_gdnsd, "weighted")]
        if use_gslb:
            g += [mk("gslb-roundrobin", "gslb", 1000, "all3", q1k, self.start_gslb, "RoundRobin", False),
                  mk("gslb-ratio", "gslb", 1000, "one", q1k, self.start_gslb, "Ratio", False)]
        groups.append(("1,000 names, health checks every 5 s (RoundRobin / Ratio)", "1k", g))
        g = [mk("knotd-ecs", "knot", 1000, "all3", qecs, self.start_knot, True),
             mk("gdnsd-geoip", "gdnsd", 1000, "nearest", qecs, self.start_gdnsd, "geoip")]
        if use_gslb:
            g += [mk("gslb-locality", "gslb", 1000, "nearest", qecs, self.start_gslb, "Locality", True)]
        groups.append(("1,000 names, Locality, ECS queries, 10,000-prefix topology", "ecs", g))
        # The cost of the internet-facing features on the answer path (issues 10, 11):
        # rate limiting in the path but not limiting (no exempt network, a rate no
        # bucket reaches) against it off and against the default (loopback exempt:
        # one prefix comparison); and queries carrying cookies (a client cookie and a
        # valid server cookie, as from a resolver that learnt it: one SipHash per
        # query to check it), against knotd with mod-cookies and the same secret on
        # the same queries.
        qck = os.path.join(self.work, "q-1k-cookies.bin")
        gen.write_queries(qck, 1000, 200_000, seed=1, cookies=True)
        rrl_off = "[rrl]\nenabled = false\n"
        rrl_on = "[rrl]\nexempt = []\nresponses_per_second = 1000000\n"
        g = [mk("knotd", "knot", 1000, "all3", q1k, self.start_knot, False),
             mk("knotd-cookies", "knot", 1000, "all3", qck, self.start_knot, False, True)]
        if use_gslb:
            g += [mk("gslb-rrl-off", "gslb", 1000, "all3", q1k, self.start_gslb, "RoundRobin", False,
                     rrl_off),
                  mk("gslb-rrl-on", "gslb", 1000, "all3", q1k, self.start_gslb, "RoundRobin", False,
                     rrl_on),
                  mk("gslb-default", "gslb", 1000, "all3", q1k, self.start_gslb, "RoundRobin", False),
                  mk("gslb-cookies", "gslb", 1000, "all3", qck, self.start_gslb, "RoundRobin", False,
                     f'cookie_secret = "{gen.COOKIE_SECRET}"\n' + rrl_off)]
        groups.append(("1,000 names, RoundRobin: rate limiting off / on and not limiting / default "
                       "(loopback exempt); cookies (client + valid server) in every query", "features", g))
        if big:
            g = [mk(f"knotd-{big // 1000}k", "knot", big, "all3", qbig, self.start_knot, False),
                 mk(f"gdnsd-multifo-{big // 1000}k", "gdnsd", big, "all3", qbig, self.start_gdnsd, "multifo")]
            if use_gslb:
                g += [mk(f"gslb-roundrobin-{big // 1000}k", "gslb", big, "all3", qbig,
                         self.start_gslb, "RoundRobin", False)]
            groups.append((f"{big:,} names, health checks every 5 s (RoundRobin)", "big", g))
        if use_gslb:
            # Steering on the answer path: Ratio with stickiness (a rendezvous hash of
            # each query's ECS /24) and every target within its slow-start ramp (an
            # hour long, started when the targets turned Healthy at registration),
            # against plain Ratio on the same ECS queries. Goal: within 3%.
            steer = {"stickiness": "ClientSubnet", "slowStartSeconds": 3600}
            g = [mk("knotd-ecs", "knot", 1000, "all3", qecs, self.start_knot, True),
                 mk("gslb-ratio-ecs", "gslb", 1000, "one", qecs, self.start_gslb, "Ratio", False),
                 mk("gslb-ratio-sticky-slowstart", "gslb", 1000, "one", qecs, self.start_gslb,
                    "Ratio", False, "", steer)]
            groups.append(("1,000 names, Ratio with stickiness and slow start vs plain Ratio, "
                           "ECS queries", "steer", g))
        if use_gslb and a.gslb_nocount:
            # What counting answers per target costs: the same build without it
            # (feature bench-no-answer-counts). RoundRobin counts 3 targets per answer,
            # Ratio 1. Goal: at most 2%.
            nc = a.gslb_nocount
            g = [mk("knotd", "knot", 1000, "all3", q1k, self.start_knot, False),
                 mk("gslb-roundrobin", "gslb", 1000, "all3", q1k, self.start_gslb, "RoundRobin", False),
                 mk("gslb-roundrobin-nocount", "gslb", 1000, "all3", q1k, self.start_gslb,
                    "RoundRobin", False, "", None, nc),
                 mk("gslb-ratio", "gslb", 1000, "one", q1k, self.start_gslb, "Ratio", False),
                 mk("gslb-ratio-nocount", "gslb", 1000, "one", q1k, self.start_gslb,
                    "Ratio", False, "", None, nc)]
            groups.append(("1,000 names, answer counting on and off (RoundRobin / Ratio)", "count", g))
        return groups

    def run(self):
        t0 = time.monotonic()
        info = common.machine_info()
        self.say(f"machine: {info}")
        self.start_listeners()
        groups = self.plan()
        if self.a.groups:
            keep = set(self.a.groups.split(","))
            groups = [g for g in groups if g[1] in keep]
        if self.a.only:
            want = self.a.only.split(",")
            groups = [(t, k, [x for x in ss if any(x[0].label.startswith(w) for w in want)])
                      for t, k, ss in groups]
            groups = [g for g in groups if g[2]]
        results = []
        try:
            for title, key, servers in groups:
                self.run_group(title, [x for x in servers])
                results.append((title, key, [s for s, _ in servers]))
        finally:
            self.procs.stop_all()
        info["elapsed_s"] = round(time.monotonic() - t0)
        info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        md = render(results, info, self.a)
        print(md)
        with open(os.path.join(self.work, "results.md"), "w") as f:
            f.write(md)
        with open(os.path.join(self.work, "results.json"), "w") as f:
            json.dump({"machine": info, "groups": [
                {"title": t, "servers": [server_json(s) for s in ss]} for t, _, ss in results]},
                f, indent=1)
        self.say(f"results: {self.work}/results.md and results.json ({info['elapsed_s']} s)")


def server_json(s):
    return {"label": s.label, "names": s.n, "error": s.error, "note": s.note, "rss_mib": s.rss,
            "idle_cpu": s.idle_cpu,
            "latency": s.latency, "rounds": s.rounds}


def summarize(s):
    if not s.rounds:
        return None
    return {
        "qps": median([m["qps"] for m in s.rounds]),
        "cpu": median([m["cpu_share"] for m in s.rounds]),
        "qcpu": median([m["q_per_cpu_s"] for m in s.rounds]),
        "lost": median([m["lost_pct"] for m in s.rounds]),
    }


def fmt(v, spec, scale=1.0):
    return "n/a" if v is None else format(v * scale, spec)


def render(results, info, a):
    out = [f"Machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}; "
           f"load average {' '.join(info['loadavg_start'])} at start, "
           f"{' '.join(info['loadavg_end'])} at end; {info['date']}; run took {info['elapsed_s']} s.",
           f"Server pinned to CPU {common.SERVER_CPU}, dnsperf to CPU {common.CLIENT_CPU} "
           f"(`dnsperf -B {' '.join(common.DNSPERF_LOAD)}`); {a.rounds} interleaved round(s) x "
           f"{a.seconds} s per server, medians; latency at half of each server's own max QPS, "
           f"{a.rounds} interleaved round(s) x {a.lat_seconds} s, medians of p50 and p99.", ""]
    out.append("| workload | server | QPS | server CPU | q/CPU-s | vs knotd | p50 µs @50% | "
               "p99 µs @50% | q/CPU-s @50% | RSS MiB | idle CPU | lost % |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    goals, notes = [], []
    for title, key, servers in results:
        base = next((summarize(s) for s in servers if s.kind == "knot"), None)
        for s in servers:
            m = summarize(s)
            if s.error and not m:
                out.append(f"| {key} | {s.label} | not measured¹ | | | | | | | | | |")
                notes.append(f"{s.label}: {s.error}")
                continue
            ratio = (m["qcpu"] / base["qcpu"]) if (base and m and base["qcpu"]) else None
            s.ratio = ratio
            lat = s.latency or {}
            out.append(
                f"| {key} | {s.label} | {fmt(m['qps'], ',.0f')} | {fmt(m['cpu'], '.0%')} | "
                f"{fmt(m['qcpu'], ',.0f')} | {fmt(ratio, '.2f')}{'x' if ratio is not None else ''} | {fmt(lat.get('p50'), '.0f', 1e6)} | "
                f"{fmt(lat.get('p99'), '.0f', 1e6)} | {fmt(lat.get('q_per_cpu_s'), ',.0f')} | "
                f"{fmt(s.rss, '.1f')} | {fmt(s.idle_cpu, '.1%')} | "
                f"{fmt(m['lost'], '.2f')} |")
            if s.error or s.note:
                notes.append(f"{s.label}: {' '.join(x for x in (s.note, s.error) if x)}")
        knot = next((s for s in servers if s.kind == "knot"), None)
        if key == "features":
            goals += feature_lines(servers)
            continue
        if key in RELATIVE_GOALS:
            goals += relative_goal_lines(servers, RELATIVE_GOALS[key])
            continue
        for s in servers:
            if s.kind != "gslb":
                continue
            goals += goal_lines(s, knot, key)
    if notes:
        out += ["", "¹ Notes:", ""] + [f"- {n}" for n in notes]
    out += ["", "Workloads: " + "; ".join(f"`{k}` = {t}" for t, k, _ in results) + ".",
            "", "Goals (gslb):", ""] + [f"- {g}" for g in goals]
    return "\n".join(out) + "\n"


def goal_lines(s, knot, key):
    lines = []
    m = summarize(s)
    if not m:
        return [f"{s.label}: not measured ({s.error}) — every goal for it is unmet"]
    want = 1.0 if key == "ecs" else 1.2
    r = getattr(s, "ratio", None)
    if key != "big" and r is not None:
        lines.append(verdict(f"{s.label} q/CPU-s >= {want}x knotd", r >= want,
                             f"{r:.2f}x ({(r / want - 1) * 100:+.0f}% vs goal)"))
    if key != "big" and s.latency and knot and knot.latency:
        p, k = s.latency["p99"], knot.latency["p99"]
        lines.append(verdict(f"{s.label} p99 at half load <= knotd's", p <= k,
                             f"{p * 1e6:.0f} µs vs {k * 1e6:.0f} µs ({(p / k - 1) * 100:+.0f}%)"))
    if s.rss is not None:
        limit = 10 if s.n <= 1000 else 300 if s.n >= 100_000 else None
        if limit:
            lines.append(verdict(f"{s.label} RSS <= {limit} MiB with {s.n:,} names", s.rss <= limit,
                                 f"{s.rss:.1f} MiB ({(s.rss / limit - 1) * 100:+.0f}%)"))
        else:
            lines.append(f"{s.label} RSS {s.rss:.1f} MiB with {s.n:,} names (the goal is stated "
                         f"for 1,000 and 100,000 names)")
    return lines


# Workloads whose goals compare two gslb configurations in the same run:
# (server, baseline, largest allowed q/CPU-s loss).
RELATIVE_GOALS = {
    "steer": [("gslb-ratio-sticky-slowstart", "gslb-ratio-ecs", 0.03)],
    "count": [("gslb-roundrobin", "gslb-roundrobin-nocount", 0.02),
              ("gslb-ratio", "gslb-ratio-nocount", 0.02)],
}


def relative_goal_lines(servers, pairs):
    by = {s.label: summarize(s) for s in servers}
    lines = []
    for label, base, loss in pairs:
        m, b = by.get(label), by.get(base)
        goal = f"{label} q/CPU-s within {loss:.0%} of {base}"
        if not m or not b or not b["qcpu"]:
            lines.append(f"{goal}: not measured — unmet")
            continue
        r = m["qcpu"] / b["qcpu"]
        lines.append(verdict(goal, r >= 1 - loss, f"{r:.3f}x ({(r - 1) * 100:+.1f}%)"))
    return lines


def feature_lines(servers):
    """The features workload: each feature's cost as a ratio of q/CPU-s in the same run."""
    by = {s.label: summarize(s) for s in servers}

    def ratio(a, b):
        x, y = by.get(a), by.get(b)
        return x["qcpu"] / y["qcpu"] if x and y and x["qcpu"] and y["qcpu"] else None

    lines = []
    for label, base, goal in [("gslb-rrl-on", "gslb-rrl-off", 0.97),
                              ("gslb-default", "gslb-rrl-off", 0.97),
                              ("gslb-cookies", "gslb-rrl-off", 0.97)]:
        r = ratio(label, base)
        if r is None:
            lines.append(f"{label} vs {base}: not measured")
        else:
            lines.append(verdict(f"{label} q/CPU-s within 3% of {base}", r >= goal, f"{r:.3f}x"))
    for a, b in [("gslb-rrl-off", "knotd"), ("gslb-cookies", "knotd-cookies")]:
        r = ratio(a, b)
        lines.append(f"{a} vs {b}: " + (f"{r:.2f}x" if r is not None else "not measured"))
    return lines


def verdict(goal, ok, detail):
    return f"{goal}: {'met' if ok else 'NOT met'} — {detail}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--gslb", help="gslb binary (release build)")
    p.add_argument("--gslb-nocount", help="gslb built with --features bench-no-answer-counts "
                   "(enables the `count` workload)")
    p.add_argument("--peers-only", action="store_true", help="measure knotd and gdnsd only")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--lat-seconds", type=int, default=4)
    p.add_argument("--idle-seconds", type=int, default=5, help="idle CPU sample (health checks only)")
    p.add_argument("--big-names", type=int, default=100_000, help="0 skips the big workload")
    p.add_argument("--groups", help="comma list of workloads to run: 1k,ecs,big,steer,count "
                   "(default all)")
    p.add_argument("--only", help="comma list of server label prefixes, e.g. knotd,gslb-ratio")
    p.add_argument("--put-deadline", type=int, default=240,
                   help="seconds allowed for registering one server's NameServices")
    a = p.parse_args()
    if not a.peers_only and not a.gslb:
        p.error("--gslb is required unless --peers-only")
    os.makedirs(a.work, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    Bench(a).run()


if __name__ == "__main__":
    main()
