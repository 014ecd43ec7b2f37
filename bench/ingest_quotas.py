"""What quota enforcement costs batch ingestion (not a test): gunicorn against PostgreSQL and
Redis, driven by wrk, reusing bench/ingest.py's seed, server and load.

    .venv/bin/python bench/ingest_quotas.py [--workers 2] [--threads 4] [--seconds 10] [--rounds 3]

It (re)creates its own database `billing_bench_quotas` with bench/ingest.py's seed (100 customers,
each with a subscription metered by `api_calls` and `storage_gb`), then measures POST
/api/v1/events/batch (1,000 new events per request over all 100 namespaces, 4 connections):
  off       no ingestion guard at all (bench/wsgi_without_quotas.py): the baseline
  no-quota  the quota guard registered, no quota or plan limit anywhere (what every tenant pays)
  on        every namespace has a quota on both metrics (resource_limits and api_limits, out of
            reach), so every batch locks and checks 200 (namespace, metric) pairs and takes 200
            token buckets in one Redis script
Once the quotas exist, `on` and `off` alternate for --rounds rounds; each `on` run is compared
with the mean of the `off` runs either side of it (the shared box's speed drifts by tens of
percent within minutes), and the median of those costs is the figure (target: <= 20%).
"""

import argparse
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest
from common import (
    BASE_DIR,
    cpu_seconds,
    free_port,
    load_average,
    recreate_database,
    start_gunicorn,
    stop,
)

ingest.BENCH_DB = "billing_bench_quotas"
TARGET_COST = 0.20

QUOTAS_SCRIPT = """
import django

django.setup()
from customers.models import Namespace
from quotas.models import Quota

spec = {
    "object_limits": {},
    "resource_limits": {"api_calls": {"maximum": 10**12}, "storage_gb": {"maximum": 10**12}},
    "api_limits": {
        "api_calls": {"rate": 10**9, "burst": 10**9, "unit": "per-second"},
        "storage_gb": {"rate": 10**9, "burst": 10**9, "unit": "per-second"},
    },
}
Quota.objects.bulk_create(
    Quota(tenant_id=ns.tenant_id, namespace=ns, name="bench", spec=spec)
    for ns in Namespace.objects.all()
)
print(Quota.objects.count())
"""


def measure(args, environment, seed, script: Path, wsgi: str, name: str) -> float:
    run = f"{name}-{uuid.uuid4().hex[:8]}"
    template = ingest.LUA_BATCH % {
        "subs": ", ".join(f'"{s}"' for s in seed["subscriptions"]),
        "key": seed["api_key"],
        "run": run,
        "customer": seed["customers"][0],
    }
    port = free_port()
    server = start_gunicorn(
        environment,
        port,
        workers=args.workers,
        worker_class=args.worker_class,
        threads=args.threads,
        wsgi=wsgi,
    )
    url = f"http://127.0.0.1:{port}/api/v1/events/batch"
    try:
        script.write_text(template.replace(run, run + "w"))
        ingest.run_wrk(url, script, connections=4, seconds=3)
        script.write_text(template)
        before = cpu_seconds(server.pid)
        result = ingest.run_wrk(url, script, connections=4, seconds=args.seconds)
        after = cpu_seconds(server.pid)
    finally:
        stop(server)
    events = result["rps"] * 1000
    # CPU per 1,000 events (one batch) of the server, PostgreSQL and Redis: the machine's cost
    # of an event, which the box's speed drifts move far less than its throughput.
    spent = {k: (after[k] - before[k]) * 1000 / max(result["requests"], 1) for k in after}
    print(
        f"  {name:9s} {events:9.0f} events/s  (p50 {result['p50']:.0f} ms, p99 "
        f"{result['p99']:.0f} ms, {result['requests']} batches; CPU per batch "
        f"{sum(spent.values()):.1f} ms: gunicorn {spent['gunicorn']:.1f}, PostgreSQL "
        f"{spent['postgres']:.1f}, Redis {spent['redis']:.1f})",
        flush=True,
    )
    return events, sum(spent.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default="gthread")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="on/off pairs after the quotas exist")
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
    )
    args = parser.parse_args()

    print(f"load average before: {load_average()} ({os.cpu_count()} CPUs)", flush=True)
    environment = ingest.ingest_environment(args.redis_url or None)
    environment["CACHE_KEY_PREFIX"] = "bench-quotas"
    recreate_database(ingest.BENCH_DB)
    seed = ingest.migrate_and_seed(environment)
    script = BASE_DIR / "var" / "bench_ingest" / "quotas_batch.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    print("batch POST /api/v1/events/batch, 1,000 events over 100 namespaces, 4 connections:")
    results = {
        "off": measure(
            args, environment, seed, script, "bench.wsgi_without_quotas:application", "off"
        ),
        "no-quota": measure(
            args, environment, seed, script, "billing_project.wsgi:application", "no-quota"
        ),
    }
    created = subprocess.run(
        [sys.executable, "-c", QUOTAS_SCRIPT],
        cwd=BASE_DIR,
        env={**environment, "DJANGO_SETTINGS_MODULE": "billing_project.settings"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"  ({created} quotas created: one per namespace, both metrics)")
    # The box is shared and its speed drifts: "on" runs alternate with "off" runs, and each "on"
    # is compared with the mean of the "off" runs either side of it.
    off_runs, on_runs = [results["off"]], []
    for _ in range(args.rounds):
        on_runs.append(
            measure(args, environment, seed, script, "billing_project.wsgi:application", "on")
        )
        off_runs.append(
            measure(args, environment, seed, script, "bench.wsgi_without_quotas:application", "off")
        )
    print(
        f"gunicorn {args.worker_class}, {args.workers} workers x {args.threads} threads; "
        f"PostgreSQL {ingest.BENCH_DB}; cache {'Redis' if args.redis_url else 'in-process'}; "
        f"load average after: {load_average()}"
    )

    def around(i: int, figure: int) -> float:
        return (off_runs[i][figure] + off_runs[i + 1][figure]) / 2

    no_quota_cost = 1 - results["no-quota"][0] / around(0, 0)
    print(f"quotas no-quota: {no_quota_cost:+.1%} throughput cost vs off")
    costs = [1 - on[0] / around(i, 0) for i, on in enumerate(on_runs)]
    cpu_costs = [on[1] / around(i, 1) - 1 for i, on in enumerate(on_runs)]
    for i, (cost, cpu_cost) in enumerate(zip(costs, cpu_costs, strict=True), start=1):
        print(
            f"quotas on, round {i}: {cost:+.1%} throughput cost, {cpu_cost:+.1%} CPU per event, "
            "vs the off runs around it"
        )
    cost = statistics.median(costs)
    print(
        f"quotas on: {statistics.median(cpu_costs):+.1%} CPU per event "
        f"(median of {len(cpu_costs)} rounds)"
    )
    ok = cost <= TARGET_COST
    print(
        f"quotas on: {cost:+.1%} throughput cost (median of {len(costs)} rounds)   "
        f"target: quotas on cost <= {TARGET_COST:.0%}: {'met' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
