"""What the benchmark scripts share: paths, the bench database, the environment of a server under
test, gunicorn's start and stop, wrk's latency units and the load average."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN_DIR = Path(PYTHON).parent
PG_SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
WSGI_APPLICATION = "billing_project.wsgi:application"


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")


def server_environment(
    database: str, *, redis_url: str | None, cache_prefix: str, extra: dict | None = None
) -> dict:
    """The environment of the server under test: DEBUG off, persistent connections, the bare
    baseline view routed, and rate limits out of reach (still counted on every request, as in
    production)."""
    environment = {
        **os.environ,
        "DATABASE_URL": f"{PG_SERVER}/{database}",
        "DEBUG": "false",
        "BENCH_BARE_VIEW": "1",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "1000000000/m",
        "INGEST_RATE_LIMIT": "1000000000/m",
        "CONN_MAX_AGE": "600",
        **(extra or {}),
    }
    environment.pop("TEST_DATABASE_NAME", None)
    if redis_url:
        environment["REDIS_URL"] = redis_url
        environment["CACHE_KEY_PREFIX"] = cache_prefix
    else:
        environment.pop("REDIS_URL", None)
    return environment


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(
    environment: dict,
    port: int,
    *,
    workers: int,
    worker_class: str = "gthread",
    threads: int = 4,
    wsgi: str = WSGI_APPLICATION,
) -> subprocess.Popen:
    """gunicorn on 127.0.0.1:`port` in its own process group, once it answers /bench/bare."""
    command = [
        str(BIN_DIR / "gunicorn"),
        wsgi,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    server = subprocess.Popen(command, cwd=BASE_DIR, env=environment, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/bare", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit("gunicorn exited during start-up") from None
            time.sleep(0.2)
    stop(server)
    raise SystemExit("gunicorn did not answer within 30 s")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


def milliseconds(value: str) -> float:
    """wrk's latency ("812.00us", "4.20ms", "1.01s") in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(process_group: int) -> dict[str, float]:
    """CPU seconds used so far by the server under test (the processes of `process_group`, which
    start_gunicorn makes its own), PostgreSQL and Redis, read from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {"gunicorn": 0.0, "postgres": 0.0, "redis": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[2] is the process group; [11] and [12] are user and system ticks.
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        if int(fields[2]) == process_group:
            used["gunicorn"] += seconds
        elif name == "postgres":
            used["postgres"] += seconds
        elif name.startswith("redis-server"):
            used["redis"] += seconds
    return used
