#!/usr/bin/env python3
"""Load benchmark driver: a throw-away deployment (PostgreSQL, SoftHSM2,
holdfast-gateway, as tests/integration/harness.py builds it), users enrolled
with holdfast-admin, then build/bin/load_gen against it.

  bench/load.py [--build DIR] [--idle N] [--users N] [load_gen options...]

Without --idle: throughput and acknowledgement latency (see bench/README.md).
With --idle N: N authenticated idle sessions and the gateway's RSS per
session. Prints load_gen's table, the gateway's own figures from its
metrics, and one JSON line starting with {"bench":.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def metric(text, name, labels=""):
    m = re.search(r"^" + re.escape(name) + re.escape(labels) + r"\s+(\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def cpu_seconds(pids):
    """User + system CPU seconds of the processes (that still exist)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state is field 3, utime 14 and stime 15 (1-based).
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def postgres_pids(pg_dir):
    """The postmaster of the cluster in pg_dir and its children."""
    with open(os.path.join(pg_dir, "data", "postmaster.pid")) as f:
        master = int(f.readline())
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return pids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("HOLDFAST_BUILD", os.path.join(SOURCE, "build")))
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--users", type=int, default=0, help="users to enrol (default: 16, or 32 for --idle)")
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0,
                    help="the gateway's database.workers (default: the gateway's default)")
    args, rest = ap.parse_known_args()
    build = os.path.abspath(args.build)
    os.environ.update({
        "HOLDFAST_SOURCE_DIR": SOURCE,
        "HOLDFAST_GATEWAY": os.path.join(build, "bin", "holdfast-gateway"),
        "HOLDFAST_ADMIN": os.path.join(build, "bin", "holdfast-admin"),
        "HOLDFAST_CLIENT": os.path.join(build, "bin", "holdfast-client"),
    })
    sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
    import harness  # noqa: E402  (needs the environment above)

    if args.idle:
        # Every session is a descriptor in the gateway (which raises its soft
        # limit to the hard one) and in load_gen; raising the hard limit
        # needs root (CAP_SYS_RESOURCE).
        need = args.idle + 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard < need:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            except (ValueError, OSError):
                sys.exit(f"load.py: --idle {args.idle} needs an open files limit of {need} (hard limit is {hard})")
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))

    users = args.users or (32 if args.idle else 2 * args.senders)
    d = harness.Deployment("load")
    try:
        if args.workers:
            with open(d.config) as f:
                text = f.read()
            with open(d.config, "w") as f:
                f.write(text.replace("database:\n", f"database:\n  workers: {args.workers}\n", 1))
        d.start_gateway()
        print(f"load.py: enrolling {users} users", file=sys.stderr)
        codes = os.path.join(d.dir, "codes.txt")
        with open(codes, "w") as f:
            for i in range(users):
                name = f"user{i:03d}"
                d.admin("user", "add", name)
                f.write(f"{name} {d.enrollment_code(name)}\n")
        cmd = [os.path.join(build, "bin", "load_gen"), "--url", d.server, "--ca", d.ca, "--codes", codes,
               "--conninfo", d.conninfo, "--gateway-pid", str(d.gateway.pid)]
        if args.idle:
            # One source address per 20,000 connections keeps clear of
            # ephemeral port exhaustion (28,000 ports per address pair).
            cmd += ["--mode", "idle", "--idle", str(args.idle), "--local-addrs", str(args.idle // 20000 + 1)]
        else:
            cmd += ["--mode", "load", "--senders", str(args.senders)]
        cmd += rest
        print("load.py: " + " ".join(cmd), file=sys.stderr)
        # Where the CPU went during the run (the load generator's own is
        # read from its rusage): tells which of the three is the bound.
        pg_pids = postgres_pids(os.path.join(d.dir, "pg"))
        cpu_before = {"gateway": cpu_seconds([d.gateway.pid]), "postgres": cpu_seconds(pg_pids)}
        wall_before = time.monotonic()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.monotonic() - wall_before
        # Backends that ended during the run are missed; PostgreSQL's are long-lived here.
        cpu = {
            "wall_s": round(wall, 1),
            "gateway_s": round(cpu_seconds([d.gateway.pid]) - cpu_before["gateway"], 1),
            "postgres_s": round(cpu_seconds(postgres_pids(os.path.join(d.dir, "pg"))) - cpu_before["postgres"], 1),
            "load_gen_s": round(children_after.ru_utime + children_after.ru_stime -
                                children_before.ru_utime - children_before.ru_stime, 1),
        }
        lines = out.stdout.splitlines()
        result = None
        for line in lines:
            if line.startswith('{"bench":'):
                result = json.loads(line)
            else:
                print(line)
        if out.returncode != 0 or result is None:
            print(d.gateway_log(), file=sys.stderr)
            sys.exit(f"load.py: load_gen failed ({out.returncode})")

        status, text = d.https_get("/metrics")
        gw = {}
        if status == 200:
            n = metric(text, "holdfast_ingest_batch_size_count")
            total = metric(text, "holdfast_ingest_batch_size_sum")
            commit_n = metric(text, "holdfast_ingest_commit_seconds_count")
            commit_s = metric(text, "holdfast_ingest_commit_seconds_sum")
            gw = {
                "mean_ingest_batch": round(total / n, 1) if n else None,
                "mean_commit_ms": round(1000 * commit_s / commit_n, 2) if commit_n else None,
                "tls_handshakes_resumed": metric(text, "holdfast_tls_handshakes_total", '{resumed="true"}'),
                "tls_handshakes_full": metric(text, "holdfast_tls_handshakes_total", '{resumed="false"}'),
                "backpressure_pauses": metric(text, "holdfast_ingest_backpressure_pauses_total"),
                "sessions_authenticated": metric(text, "holdfast_client_sessions_authenticated"),
            }
            print("gateway metrics: " + ", ".join(f"{k} {v}" for k, v in gw.items()))
            print()
        result["gateway"] = gw
        print("cpu over the whole run (setup, sealing and both phases): " +
              ", ".join(f"{k} {v}" for k, v in cpu.items()))
        result["cpu"] = cpu
        print(json.dumps(result, separators=(",", ":")))
    finally:
        d.close()


if __name__ == "__main__":
    main()
