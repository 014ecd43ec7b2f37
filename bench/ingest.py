"""Usage ingestion benchmark (not a test): gunicorn against PostgreSQL, driven by wrk.

    .venv/bin/python bench/ingest.py [--workers 2] [--threads 4] [--seconds 8] [--rounds 3]

It (re)creates its own database `billing_bench_ingest`, migrates it, seeds one tenant with 100
customers, each with an active monthly subscription metered by `api_calls` (count) and
`storage_gb` (sum), starts gunicorn on a free local port and measures:
  single  POST /api/v1/events, one new event per request, 16 keep-alive connections (wrk)
  batch   POST /api/v1/events/batch, 1,000 new events per request, 4 connections (wrk)
  copy    a raw psycopg COPY of the same number of rows (same shape, 1,000-row transactions) into
          the same table, on one connection: the ceiling the batch path is compared with
  costs   GET /api/v1/customers/{id}/costs of a customer with 1,000,000 events in its current
          period, one connection, 10 s: median and p99 latency
and prints every figure with the targets (single >= 1,000 events/s, batch >= 20,000 events/s,
batch/COPY >= 0.25, costs median <= 50 ms). Load average is printed before and after: the box
is shared, so numbers are only comparable with the load they ran under.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BASE_DIR,
    PG_SERVER,
    PYTHON,
    free_port,
    load_average,
    milliseconds,
    recreate_database,
    server_environment,
    start_gunicorn,
    stop,
)

BENCH_DB = "billing_bench_ingest"
SUBSCRIPTIONS = 100
COST_EVENTS = 1_000_000
TARGETS = {"single": 1000.0, "batch": 20000.0, "ratio": 0.25, "costs_ms": 50.0}


def ingest_environment(redis_url: str | None) -> dict:
    return server_environment(
        BENCH_DB,
        redis_url=redis_url,
        cache_prefix="bench-ingest",
        extra={"MAX_REQUEST_BODY_BYTES": str(20 * 1024 * 1024)},
    )


SEED_SCRIPT = """
import datetime as dt, json, sys
from decimal import Decimal
import django

django.setup()
from django.db import connection, transaction
from django.utils import timezone

from billing_project import billing_math
from customers.models import Customer, Namespace
from customers.services import default_namespace_name
from subscriptions.models import (
    Metric, Price, Product, Subscription, SubscriptionItem, SubscriptionPlan
)
from tenants.services import api_key_create, tenant_create

count = int(sys.argv[1])
now = timezone.now()
anchor = now - dt.timedelta(days=20)
start, end = billing_math.period_bounds(anchor, "month", 0)
with transaction.atomic():
    tenant = tenant_create(slug="bench", name="Bench Ltd", country="DE")
    customers = Customer.objects.bulk_create(
        Customer(tenant=tenant, email=f"c{n}@bench.example", country="DE") for n in range(count)
    )
    namespaces = Namespace.objects.bulk_create(
        Namespace(tenant=tenant, customer=c, name=default_namespace_name(c)) for c in customers
    )
    for customer, namespace in zip(customers, namespaces, strict=True):
        customer.default_namespace = namespace
    Customer.objects.bulk_update(customers, ["default_namespace"])
    product = Product.objects.create(tenant=tenant, name="Cloud")
    fixed = Price.objects.create(
        tenant=tenant, product=product, amount=1000, currency="EUR", schedule="month"
    )
    plan = SubscriptionPlan.objects.create(
        tenant=tenant, name="Cloud", code_name="cloud", product=product
    )
    calls = Metric.objects.create(
        tenant=tenant, name="API calls", code="api_calls", aggregation_method="count"
    )
    storage = Metric.objects.create(
        tenant=tenant, name="Storage", code="storage_gb", aggregation_method="sum"
    )
    prices = {
        m.pk: Price.objects.create(tenant=tenant, product=product, amount=1, currency="EUR",
                                   schedule="month", type="per_unit", usage=True, metric=m)
        for m in (calls, storage)
    }
    subscriptions = Subscription.objects.bulk_create(
        Subscription(tenant=tenant, customer=c, plan=plan, price=fixed, schedule="month",
                     currency="EUR", anchor=anchor, current_period_start=start, valid_until=end,
                     started_at=anchor)
        for c in customers
    )
    SubscriptionItem.objects.bulk_create(
        SubscriptionItem(tenant=tenant, subscription=s, item_type="usage", product=product,
                         price=prices[m.pk], metric=m, unit_price=Decimal(1))
        for s in subscriptions for m in (calls, storage)
    )
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")
print(json.dumps({
    "api_key": api_key_create(tenant=tenant, name="bench").clear_key,
    "tenant": str(tenant.pk),
    "subscriptions": [str(s.pk) for s in subscriptions],
    "customers": [str(s.customer_id) for s in subscriptions],
    "namespaces": [str(c.default_namespace_id) for c in customers],
    "period_start": start.isoformat(),
}))
"""


def migrate_and_seed(environment: dict) -> dict:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env=environment,
        check=True,
        timeout=600,
    )
    seeded = subprocess.run(
        [PYTHON, "-c", SEED_SCRIPT, str(SUBSCRIPTIONS)],
        cwd=BASE_DIR,
        env={**environment, "DJANGO_SETTINGS_MODULE": "billing_project.settings"},
        check=True,
        timeout=600,
        capture_output=True,
        text=True,
    )
    return json.loads(seeded.stdout.strip().splitlines()[-1])


# Every request carries new event ids (wrk thread number + counter), so nothing is a duplicate.
LUA_COMMON = """
subs = {%(subs)s}
local thread_counter = 0
setup = function(thread) thread_counter = thread_counter + 1; thread:set("tid", thread_counter) end
init = function(args)
  math.randomseed(tid * 7919)
  counter = 0
  headers = {["X-BILLING-API-KEY"] = "%(key)s", ["Content-Type"] = "application/json"}
end
function one_event()
  counter = counter + 1
  local code = "api_calls"
  local value = ""
  if counter %% 4 == 0 then code = "storage_gb"; value = ',"value":' .. (counter %% 97) .. '.5' end
  return '{"event_id":"%(run)s-' .. tid .. '-' .. counter .. '","subscription":"' ..
    subs[math.random(#subs)] .. '","code":"' .. code .. '"' .. value ..
    ',"properties":{"region":"eu-' .. (counter %% 3) .. '"}}'
end
"""
LUA_SINGLE = (
    LUA_COMMON
    + """
request = function() return wrk.format("POST", "/api/v1/events", headers, one_event()) end
"""
)
LUA_BATCH = (
    LUA_COMMON
    + """
request = function()
  local parts = {}
  for i = 1, 1000 do parts[i] = one_event() end
  return wrk.format("POST", "/api/v1/events/batch", headers,
    '{"events":[' .. table.concat(parts, ",") .. ']}')
end
"""
)
LUA_COSTS = """
init = function(args) headers = {["X-BILLING-API-KEY"] = "%(key)s"} end
request = function() return wrk.format("GET", "/api/v1/customers/%(customer)s/costs", headers) end
"""


def run_wrk(url: str, script: Path, *, connections: int, seconds: int, threads: int = 2) -> dict:
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", output) or "Socket errors" in output:
        raise SystemExit(f"wrk saw failures; not a valid measurement:\n{output}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1)),
        "p99": milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
    }


def stored_events(connection) -> int:
    return connection.execute("SELECT count(*) FROM usage_usageevent").fetchone()[0]


def copy_rows(connection, seed: dict, rows: int) -> float:
    """COPY `rows` rows shaped like the batch's into usage_usageevent, 1,000 per transaction;
    returns rows/s. The rows are generated before the clock starts."""
    import datetime as dt
    import random

    rng = random.Random(1)
    now = dt.datetime.now(dt.UTC)
    prefix = uuid.uuid4().hex[:8]  # each call copies new event ids
    data = []
    for n in range(rows):
        index = rng.randrange(len(seed["subscriptions"]))
        storage = n % 4 == 0
        data.append(
            (
                uuid.uuid4(),
                seed["tenant"],
                now,
                f"copy-{prefix}-{n}",
                "storage_gb" if storage else "api_calls",
                seed["customers"][index],
                seed["namespaces"][index],
                seed["subscriptions"][index],
                f"{n % 97}.5" if storage else None,
                json.dumps({"region": f"eu-{n % 3}"}),
                now,
                "",
            )
        )
    columns = (
        "id, tenant_id, created_at, event_id, code, customer_id, namespace_id, subscription_id, "
        "value, properties, timestamp, description"
    )
    started = time.perf_counter()
    for start in range(0, rows, 1000):
        with (
            connection.transaction(),
            connection.cursor() as cursor,
            cursor.copy(f"COPY usage_usageevent ({columns}) FROM STDIN") as copy,
        ):
            for row in data[start : start + 1000]:
                copy.write_row(row)
    return rows / (time.perf_counter() - started)


def load_cost_events(connection, seed: dict) -> str:
    """1,000,000 events of one subscription spread over its current period, and the hourly
    rollups ingestion maintains for them (built with the same aggregate in one statement)."""
    subscription, customer, namespace = (
        seed["subscriptions"][0],
        seed["customers"][0],
        seed["namespaces"][0],
    )
    with connection.transaction():
        connection.execute(
            """
            INSERT INTO usage_usageevent (id, tenant_id, created_at, event_id, code, customer_id,
                namespace_id, subscription_id, value, properties, "timestamp", description)
            SELECT gen_random_uuid(), %(tenant)s, now(), 'cost-' || g, 'api_calls', %(customer)s,
                %(namespace)s, %(subscription)s, NULL, '{}'::jsonb,
                %(start)s::timestamptz + (now() - %(start)s::timestamptz) * (g::float8 / %(n)s),
                ''
            FROM generate_series(1, %(n)s) AS g
            """,
            {
                "tenant": seed["tenant"],
                "customer": customer,
                "namespace": namespace,
                "subscription": subscription,
                "start": seed["period_start"],
                "n": COST_EVENTS,
            },
        )
        connection.execute(
            """
            INSERT INTO usage_usagerollup AS t (tenant_id, subscription_id, namespace_id, code,
                hour, event_count, value_sum, value_max, latest_at, latest_value)
            SELECT tenant_id, subscription_id, namespace_id, code, date_trunc('hour', "timestamp"),
                count(*), 0, NULL, max("timestamp"), NULL
            FROM usage_usageevent WHERE event_id LIKE 'cost-%%'
            GROUP BY 1, 2, 3, 4, 5
            ON CONFLICT (tenant_id, subscription_id, code, hour, namespace_id) DO UPDATE SET
                event_count = t.event_count + excluded.event_count
            """
        )
    connection.execute("VACUUM ANALYZE usage_usageevent")
    connection.execute("VACUUM ANALYZE usage_usagerollup")
    return customer


def main() -> int:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default="gthread")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["single", "batch", "costs"])
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    print(f"load average before: {load_average()} ({os.cpu_count()} CPUs)")
    environment = ingest_environment(args.redis_url or None)
    recreate_database(BENCH_DB)
    seed = migrate_and_seed(environment)
    work = BASE_DIR / "var" / "bench_ingest"
    work.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    scripts = {}
    for name, template in (("single", LUA_SINGLE), ("batch", LUA_BATCH), ("costs", LUA_COSTS)):
        scripts[name] = work / f"{name}.lua"
        scripts[name].write_text(
            template
            % {
                "subs": ", ".join(f'"{s}"' for s in seed["subscriptions"]),
                "key": seed["api_key"],
                "run": f"{name}-{run}",
                "customer": seed["customers"][0],
            }
        )
    port = free_port()
    server = start_gunicorn(
        environment,
        port,
        workers=args.workers,
        worker_class=args.worker_class,
        threads=args.threads,
    )
    base = f"http://127.0.0.1:{port}"
    results: dict = {}
    database = psycopg.connect(f"{PG_SERVER}/{BENCH_DB}", autocommit=True)
    try:
        # The box's speed drifts within minutes: each figure is the median of --rounds runs
        # (the batch/COPY ratio is taken within a round). Every run sends new event ids.
        def measure(name: str, path: str, connections: int, tag: str) -> dict:
            template = scripts[name].read_text()
            scripts[name].write_text(template.replace(run, f"{run}{tag}"))
            try:
                return run_wrk(
                    f"{base}{path}", scripts[name], connections=connections, seconds=args.seconds
                )
            finally:
                scripts[name].write_text(template)

        def medians(runs: list[dict]) -> dict:
            return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}

        if "single" not in args.skip:
            measure("single", "/api/v1/events", 16, "w")  # warm-up
            before = stored_events(database)
            runs = [measure("single", "/api/v1/events", 16, f"r{i}") for i in range(args.rounds)]
            stored = stored_events(database) - before
            results["single"] = medians(runs)
            results["single"]["events_per_s"] = results["single"]["rps"]
            requests = sum(r["requests"] for r in runs)
            print(f"single: {requests} requests, {stored} events stored")
        if "batch" not in args.skip:
            measure("batch", "/api/v1/events/batch", 4, "w")  # warm-up
            runs, ratios = [], []
            for i in range(args.rounds):
                before = stored_events(database)
                runs.append(measure("batch", "/api/v1/events/batch", 4, f"r{i}"))
                stored = stored_events(database) - before
                copy_count = max(stored, 20_000)
                copy_rate = copy_rows(database, seed, copy_count)
                ratios.append(runs[-1]["rps"] * 1000 / copy_rate)
                print(
                    f"batch round {i + 1}: {runs[-1]['requests']} requests, {stored} events "
                    f"stored; COPY of {copy_count} rows: {copy_rate:.0f} rows/s"
                )
            results["batch"] = medians(runs)
            results["batch"]["events_per_s"] = results["batch"]["rps"] * 1000
            results["ratio"] = statistics.median(ratios)
            results["copy_rows_per_s"] = results["batch"]["events_per_s"] / results["ratio"]
        if "costs" not in args.skip:
            started = time.perf_counter()
            customer = load_cost_events(database, seed)
            print(f"costs: loaded {COST_EVENTS} events in {time.perf_counter() - started:.1f} s")
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"{base}/api/v1/customers/{customer}/costs",
                    headers={"X-BILLING-API-KEY": seed["api_key"]},
                ),
                timeout=30,
            ) as answer:
                print("costs answer:", answer.read().decode()[:300])
            run_wrk(
                f"{base}/api/v1/customers/{customer}/costs",
                scripts["costs"],
                connections=1,
                seconds=2,
                threads=1,
            )
            results["costs"] = run_wrk(
                f"{base}/api/v1/customers/{customer}/costs",
                scripts["costs"],
                connections=1,
                seconds=args.seconds,
                threads=1,
            )
    finally:
        stop(server)
        database.close()

    print(
        f"gunicorn {args.worker_class}, {args.workers} workers x {args.threads} threads; "
        f"PostgreSQL "
        f"{BENCH_DB}; cache {'Redis' if args.redis_url else 'in-process'}; "
        f"load average after: {load_average()}"
    )
    verdicts = []

    def verdict(ok: bool) -> str:
        verdicts.append(ok)
        return "met" if ok else "MISSED"

    if "single" in results:
        r = results["single"]
        print(
            f"single event POST, 16 connections: {r['events_per_s']:.0f} events/s "
            f"(p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms) target >= {TARGETS['single']:.0f}: "
            f"{verdict(r['events_per_s'] >= TARGETS['single'])}"
        )
    if "batch" in results:
        r = results["batch"]
        ratio = results["ratio"]
        print(
            f"batch POST (1,000 events), 4 connections: {r['events_per_s']:.0f} events/s "
            f"(p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms) target >= {TARGETS['batch']:.0f}: "
            f"{verdict(r['events_per_s'] >= TARGETS['batch'])}"
        )
        print(
            f"raw COPY of the same rows: {results['copy_rows_per_s']:.0f} rows/s; batch/COPY "
            f"(median of the rounds' ratios) "
            f"ratio {ratio:.2f} target >= {TARGETS['ratio']}: {verdict(ratio >= TARGETS['ratio'])}"
        )
    if "costs" in results:
        r = results["costs"]
        print(
            f"GET /customers/{{id}}/costs, 1,000,000 events in the period: median "
            f"{r['p50']:.1f} ms, p99 {r['p99']:.1f} ms ({r['rps']:.0f} req/s, 1 connection) "
            f"target median <= {TARGETS['costs_ms']:.0f} ms: "
            f"{verdict(r['p50'] <= TARGETS['costs_ms'])}"
        )
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
