"""API throughput benchmark (not a test): gunicorn against PostgreSQL, driven by wrk.

    .venv/bin/python bench/api.py [--worker-class sync|gthread] [--workers 2] [--threads 4]

It (re)creates the dedicated database `billing_bench`, migrates it, seeds one tenant with 1,000
customers, starts gunicorn on a free local port (with the bare baseline view enabled) and measures,
after a warm-up, with 16 keep-alive connections, taking turns for --rounds rounds of --seconds:
  detail  GET /api/v1/customers/{id}
  list    GET /api/v1/customers?limit=100
  bare    GET /bench/bare (a plain Django view returning constant JSON: the ceiling)
and prints the median requests/s, p50 and p99 latency over the rounds and each API scenario's
median ratio to the bare view within a round (targets: detail p99 <= 30 ms, detail/bare >= 0.5).
See bench/README.md for the results and the choices behind the defaults.
"""

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BASE_DIR,
    PYTHON,
    free_port,
    milliseconds,
    recreate_database,
    server_environment,
    start_gunicorn,
    stop,
)

BENCH_DB = "billing_bench"
CUSTOMERS = 1000
CONNECTIONS = 16
WARM_UP_SECONDS = 3
DURATION_SECONDS = 6
TARGET_DETAIL_P99_MS = 30.0
TARGET_RATIO = 0.5


def migrate_and_seed(environment: dict) -> tuple[str, list[str]]:
    """Migrate, then seed in a child process (Django configured for the bench database);
    returns the API key and the customer ids."""
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env=environment,
        check=True,
        timeout=600,
    )
    seeded = subprocess.run(
        [PYTHON, "-c", SEED_SCRIPT, str(CUSTOMERS)],
        cwd=BASE_DIR,
        env={**environment, "DJANGO_SETTINGS_MODULE": "billing_project.settings"},
        check=True,
        timeout=600,
        capture_output=True,
        text=True,
    )
    lines = seeded.stdout.split()
    return lines[0], lines[1:]


# Customers are bulk-inserted with their default namespaces, as customer_create would make them.
SEED_SCRIPT = """
import sys
import django

django.setup()
from django.db import connection, transaction

from customers.models import Customer, Namespace
from customers.services import default_namespace_name
from tenants.services import api_key_create, tenant_create

count = int(sys.argv[1])
with transaction.atomic():
    tenant = tenant_create(slug="bench", name="Bench Ltd", country="DE")
    customers = Customer.objects.bulk_create(
        Customer(tenant=tenant, email=f"customer{n}@bench.example", name=f"Customer {n}",
                 country="DE", city="Berlin", metadata={"plan": "pro", "n": n})
        for n in range(count)
    )
    namespaces = Namespace.objects.bulk_create(
        Namespace(tenant=tenant, customer=c, name=default_namespace_name(c)) for c in customers
    )
    for customer, namespace in zip(customers, namespaces, strict=True):
        customer.default_namespace = namespace
    Customer.objects.bulk_update(customers, ["default_namespace"], batch_size=500)
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")  # planner statistics for the bulk-inserted rows
print(api_key_create(tenant=tenant, name="bench").clear_key)
print("\\n".join(str(c.pk) for c in customers))
"""


# wrk picks a random customer per request, so the detail scenario is not one cached row.
WRK_SCRIPT = """
ids = {%s}
math.randomseed(42)
request = function()
  return wrk.format("GET", "/api/v1/customers/" .. ids[math.random(#ids)], headers)
end
init = function(args) headers = {["X-BILLING-API-KEY"] = "%s"} end
"""


def run_wrk(url: str, *, api_key: str | None, script: Path | None, seconds: int) -> dict:
    command = ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency"]
    command += ["--timeout", "5s"]
    if api_key:
        command += ["-H", f"X-BILLING-API-KEY: {api_key}"]
    if script:
        command += ["-s", str(script)]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if errors or socket_errors:
        raise SystemExit(f"wrk saw failures; not a valid measurement:\n{output}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1)),
        "p99": milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Sync workers, one per CPU: on small virtual machines a context switch costs more than the
    # request's Python; gthread's hand-offs between its poller and its threads, and more
    # processes than CPUs, only add to them (bench/README.md compares the configurations).
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default="sync")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=DURATION_SECONDS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2"),
        help="cache for the rate-limit counters, as in production ('' for the in-process cache)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    environment = server_environment(
        BENCH_DB, redis_url=args.redis_url or None, cache_prefix="bench"
    )
    started = time.monotonic()
    recreate_database(BENCH_DB)
    api_key, customer_ids = migrate_and_seed(environment)
    print(f"Seeded {len(customer_ids)} customers in {time.monotonic() - started:.1f} s.")

    script = BASE_DIR / "var" / "bench_detail.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    sample = random.Random(7).sample(customer_ids, 200)
    script.write_text(WRK_SCRIPT % (", ".join(f'"{i}"' for i in sample), api_key))

    port = free_port()
    server = start_gunicorn(
        environment,
        port,
        workers=args.workers,
        worker_class=args.worker_class,
        threads=args.threads,
    )
    base = f"http://127.0.0.1:{port}"
    scenarios = {
        "detail": (f"{base}/api/v1/customers/{customer_ids[0]}", api_key, script),
        "list": (f"{base}/api/v1/customers?limit=100", api_key, None),
        "bare": (f"{base}/bench/bare", None, None),
    }
    # The box's speed drifts within minutes: the scenarios take turns for --rounds rounds, and each
    # figure is the median over the rounds (ratios are taken within a round).
    rounds: list[dict] = []
    try:
        for url, key, lua in scenarios.values():
            run_wrk(url, api_key=key, script=lua, seconds=WARM_UP_SECONDS)
        for _ in range(args.rounds):
            rounds.append(
                {
                    name: run_wrk(url, api_key=key, script=lua, seconds=args.seconds)
                    for name, (url, key, lua) in scenarios.items()
                }
            )
    finally:
        stop(server)
        script.unlink(missing_ok=True)
    results = {
        name: {
            figure: statistics.median(r[name][figure] for r in rounds)
            for figure in ("rps", "p50", "p99")
        }
        for name in scenarios
    }
    ratios = {
        name: statistics.median(r[name]["rps"] / r["bare"]["rps"] for r in rounds)
        for name in scenarios
    }

    for number, r in enumerate(rounds, start=1):
        print(
            f"round {number}: "
            + ", ".join(f"{name} {r[name]['rps']:.0f} req/s" for name in scenarios)
            + f"; detail/bare {r['detail']['rps'] / r['bare']['rps']:.2f}"
        )
    threads = f", {args.threads} threads" if args.worker_class == "gthread" else ""
    print(
        f"gunicorn {args.worker_class}, {args.workers} workers{threads}; {CONNECTIONS} "
        f"keep-alive connections (wrk); {args.rounds} rounds of {args.seconds} s per scenario "
        f"after {WARM_UP_SECONDS} s warm-up; medians; PostgreSQL {BENCH_DB}; cache "
        f"{'Redis' if args.redis_url else 'in-process'}; {os.cpu_count()} CPUs"
    )
    print(f"{'scenario':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8}")
    for name, result in results.items():
        ratio = ratios[name]
        print(
            f"{name:<8} {result['rps']:>9.0f} {result['p50']:>8.2f} {result['p99']:>8.2f} "
            f"{ratio:>8.2f}"
        )
    detail_ok = results["detail"]["p99"] <= TARGET_DETAIL_P99_MS
    # The targets are the detail view's (the issue: "p99 <= 30 ms for the detail view and a
    # ratio >= 0.5"); the 100-customer list is measured and printed alongside.
    ratio_ok = ratios["detail"] >= TARGET_RATIO
    verdict = {True: "met", False: "MISSED"}
    print(
        f"targets: detail p99 <= {TARGET_DETAIL_P99_MS:.0f} ms: {verdict[detail_ok]}; "
        f"detail/bare ratio >= {TARGET_RATIO}: {verdict[ratio_ok]}"
    )
    return 0 if detail_ok and ratio_ok else 1


if __name__ == "__main__":
    sys.exit(main())
