"""Random-subdomain flood against gslb with rate limiting on (issue 11).

One network floods random names under the zone (every answer NXDOMAIN, no name
repeated) as fast as dnsperf can send, while a legitimate client on another network
asks for the real names at a steady rate. Shown:

- the limiter holds: full NXDOMAIN answers to the flooding network stay near the
  configured rate, the rest are slipped (TC=1) or dropped (from /metrics);
- memory stays bounded: gslb's RSS before, at its highest during, and after;
- the legitimate client's p99 latency during the flood is at most 2x the quiet run's.

Run through bench/flood.sh. Loopback only: the flood comes from 127.0.9.1, the
legitimate client from 127.0.1.1, gslb listens on 127.0.0.x; rate limiting runs with
`exempt = []` (loopback is exempt by default) and otherwise default settings.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import dnsbench  # noqa: E402
import gen  # noqa: E402

FLOOD_SRC = "127.0.9.1"
LEGIT_SRC = "127.0.1.1"


def metrics(addr):
    """The DNS counters of /metrics as {name{labels}: value}."""
    api = common.Api(addr, dnsbench.API_PORT)
    st, body = api.request("GET", "/metrics")
    if st != 200:
        raise RuntimeError(f"/metrics: HTTP {st}")
    text = body.decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(gslb_dns_[a-z_]+(?:\{[^}]*\})?) (\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def nxdomain(m):
    return sum(v for k, v in m.items() if k.startswith("gslb_dns_queries_total") and 'rcode="NXDOMAIN"' in k)


def dnsperf_from(src, addr, qfile, seconds, rate=None, verbose=False, out=None, load=None):
    """dnsperf from a chosen source address (-a), pinned to the client CPU."""
    argv = ["taskset", "-c", common.CLIENT_CPU, "dnsperf", "-B", "-a", src, "-d", qfile,
            "-s", addr, "-p", str(dnsbench.DNS_PORT), "-l", str(seconds)]
    argv += load or ["-t", "2"] + common.DNSPERF_LOAD
    if rate:
        argv += ["-Q", str(int(rate))]
    if verbose:
        argv += ["-v"]
    with open(out, "w") if out else open(os.devnull, "w") as so:
        p = subprocess.run(argv, stdout=so if verbose else subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, check=False)
    text = open(out).read() if verbose else p.stdout
    if p.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({p.returncode}): {text[-400:]}")
    res = common.parse_dnsperf(text)
    if verbose:
        lat = sorted(float(l.split()[-1]) for l in text.splitlines()
                     if l.startswith("> ") and l.split()[1] not in ("T", "I"))
        res["latencies"] = lat
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--gslb", required=True)
    p.add_argument("--flood-seconds", type=int, default=60)
    p.add_argument("--quiet-seconds", type=int, default=20)
    p.add_argument("--legit-rate", type=int, default=2000, help="legitimate queries per second")
    p.add_argument("--flood-to", choices=["gslb", "sink"], default="gslb",
                   help="sink: a control run; the flood goes to a UDP socket nobody reads "
                        "(127.0.9.53), so the legitimate client's p99 shows what the flooding "
                        "dnsperf next to it costs the measurement alone")
    p.add_argument("--flooder", choices=["lean", "dnsperf"], default="lean",
                   help="lean: bench/lib/flooder.py, sends at --flood-rate and reads no "
                        "answer, as an attacker does; dnsperf: 8 threads, 20,000 outstanding, "
                        "as fast as it can (its own CPU then dominates the measurement)")
    p.add_argument("--flood-rate", type=int, default=20_000, help="lean flooder's queries per second")
    p.add_argument("--put-deadline", type=int, default=120)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(a.work, exist_ok=True)
    # dnsbench.Bench provides the fake VIPs, gslb start-up and registration.
    a.idle_seconds, a.peers_only = 0, False
    b = dnsbench.Bench(a)
    info = common.machine_info()
    t0 = time.monotonic()
    try:
        b.start_listeners()
        qlegit = os.path.join(a.work, "q-legit.bin")
        qflood = os.path.join(a.work, "q-flood.bin")
        gen.write_queries(qlegit, 1000, 200_000, seed=1)
        gen.write_flood(qflood, 1_000_000)
        s = dnsbench.Server("gslb-rrl", "gslb", b.ip(), 1000, "all3", qlegit)
        b.say("starting gslb with [rrl] exempt = [] (every other setting its default)")
        b.start_gslb(s, "RoundRobin", False, "[rrl]\nexempt = []\n")
        b.check_answers(s)
        rss0 = common.rss_mib(s.pid)

        b.say(f"quiet: legitimate client at {a.legit_rate} q/s for {a.quiet_seconds} s")
        quiet = dnsperf_from(LEGIT_SRC, s.addr, qlegit, a.quiet_seconds, rate=a.legit_rate,
                             verbose=True, out=os.path.join(a.work, "quiet.out"))

        m0 = metrics(s.addr)
        rss_max = [rss0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                rss_max[0] = max(rss_max[0], common.rss_mib(s.pid))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        flood_res = {}

        def flood():
            if a.flooder == "dnsperf":
                # Many queries outstanding and a short timeout: dropped answers must
                # not throttle the flood itself.
                flood_res.update(dnsperf_from(FLOOD_SRC, flood_addr, qflood, a.flood_seconds,
                                              load=["-t", "1", "-c", "8", "-q", "20000"]))
                return
            argv = ["taskset", "-c", common.CLIENT_CPU, sys.executable,
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "flooder.py"),
                    FLOOD_SRC, flood_addr, str(dnsbench.DNS_PORT), qflood,
                    str(a.flood_seconds), str(a.flood_rate)]
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            r = json.loads(out)
            flood_res.update({"sent": r["sent"], "qps": r["sent"] / r["seconds"],
                              "completed": None, "lost": None})

        flood_addr = s.addr
        sink = None
        if a.flood_to == "sink":
            import socket
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind(("127.0.9.53", dnsbench.DNS_PORT))  # bound, never read
            flood_addr = "127.0.9.53"
        b.say(f"flood: random subdomains from {FLOOD_SRC} to {flood_addr} for {a.flood_seconds} s")
        ft = threading.Thread(target=flood)
        c0 = common.cpu_seconds(s.pid)
        ft.start()
        time.sleep(5)
        legit_secs = max(5, a.flood_seconds - 15)
        b.say(f"  legitimate client at {a.legit_rate} q/s for {legit_secs} s during the flood")
        during = dnsperf_from(LEGIT_SRC, s.addr, qlegit, legit_secs, rate=a.legit_rate,
                              verbose=True, out=os.path.join(a.work, "flood-legit.out"))
        ft.join()
        cpu = common.cpu_seconds(s.pid) - c0
        stop.set()
        sampler.join()
        m1 = metrics(s.addr)
        time.sleep(2)
        rss1 = common.rss_mib(s.pid)
    finally:
        b.procs.stop_all()

    d = lambda k: m1.get(k, 0) - m0.get(k, 0)  # noqa: E731
    dropped, slipped = d("gslb_dns_rrl_dropped_total"), d("gslb_dns_rrl_slipped_total")
    nx = nxdomain(m1) - nxdomain(m0)
    secs = a.flood_seconds
    full_nx = nx - dropped - slipped
    p99q = common.percentile(quiet["latencies"], 99)
    p99f = common.percentile(during["latencies"], 99)
    res = {
        "machine": info, "elapsed_s": round(time.monotonic() - t0),
        "flood": {"sent": flood_res.get("sent"), "qps": flood_res.get("qps"),
                  "responses": flood_res.get("completed"), "lost": flood_res.get("lost")},
        "nxdomain_answers": nx, "rrl_dropped": dropped, "rrl_slipped": slipped,
        "full_nxdomain_per_s": full_nx / secs, "server_cpu_share": cpu / (secs + 0.0),
        "rss_mib": {"before": rss0, "max_during": rss_max[0], "after": rss1},
        "legit": {"quiet_p99_us": p99q * 1e6, "flood_p99_us": p99f * 1e6,
                  "quiet_lost_pct": 100.0 * quiet["lost"] / max(1, quiet["sent"]),
                  "flood_lost_pct": 100.0 * during["lost"] / max(1, during["sent"])},
    }
    ratio = p99f / p99q if p99q else None
    md = [
        f"Machine: {info['nproc']} CPUs, {info['cpu']}; load average "
        f"{' '.join(info['loadavg_start'])} at start; {info['date']}.", "",
        "| measurement | result |", "|---|---:|",
        f"| flood sent to | {'gslb' if a.flood_to == 'gslb' else 'a sink nobody reads (control run: gslb sees no flood)'} |",
        f"| flooder | {'bench/lib/flooder.py (fixed rate, answers unread)' if a.flooder == 'lean' else 'dnsperf, 8 threads, 20,000 outstanding'} |",
        f"| flood sent (random names, one /24) | {res['flood']['sent'] or 0:,} in {secs} s "
        f"({res['flood']['qps'] or 0:,.0f} q/s) |",
        f"| NXDOMAIN answers built | {nx:,} |",
        f"| of which sent in full | {full_nx:,} ({full_nx / secs:,.0f}/s: the flooding network's "
        f"bucket gives 200/s until it is in debt, then none while the flood lasts; plus the "
        f"legitimate client's own NXDOMAIN answers) |",
        f"| slipped (TC=1) / dropped | {slipped:,} / {dropped:,} |",
        f"| gslb CPU during the flood | {res['server_cpu_share']:.0%} of one core |",
        f"| RSS before / max during / after (MiB) | {rss0:.1f} / {rss_max[0]:.1f} / {rss1:.1f} |",
        f"| legitimate p99, quiet / during flood | {p99q * 1e6:,.0f} µs / {p99f * 1e6:,.0f} µs "
        f"({ratio:.2f}x; goal <= 2x: {'met' if ratio is not None and ratio <= 2 else 'NOT met'}) |",
        f"| legitimate lost, quiet / during flood | {res['legit']['quiet_lost_pct']:.2f}% / "
        f"{res['legit']['flood_lost_pct']:.2f}% |",
    ]
    text = "\n".join(md) + "\n"
    print(text)
    with open(os.path.join(a.work, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
