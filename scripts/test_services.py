"""What `make test` needs beyond Python: system tools, and PostgreSQL and Redis to test against.

    python scripts/test_services.py tools          # install missing tools, or say what to run
    python scripts/test_services.py run -- CMD...  # run CMD with DATABASE_URL and REDIS_URL set

`tools`: the browser tests need Debian's Chromium, the PgBouncer test `pgbouncer`, the metrics
tests `promtool` (Debian's `prometheus`), the backup tests `pg_dump`, and a PostgreSQL and a
Redis server are started for the run when none is given. Whatever is missing is installed with
apt-get when this runs as root on a machine that has it; otherwise it prints one line with the
command to run and exits 2.

`run`: when DATABASE_URL or REDIS_URL is unset, starts a private PostgreSQL (initdb in a
temporary folder, a free port on 127.0.0.1) or Redis server for the run, sets the variable,
runs CMD, stops what it started and exits with CMD's status. So `make test` tests against
PostgreSQL and Redis, as CI does, without anything set by hand. KEYCHEST_TEST_SERVICES=none
starts nothing (the suite then runs on SQLite and a local cache, and skips what needs the
servers; the summary line names those skips).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

# ruff: noqa: S603, S607 -- fixed commands of this script; apt-get and runuser are found on PATH.

# (what needs it, how to find it, Debian package)
TOOLS: list[tuple[str, tuple[str, ...], str]] = [
    ("browser tests", ("chromium",), "chromium"),
    ("browser tests", ("chromedriver",), "chromium-driver"),
    ("PgBouncer test", ("pgbouncer", "/usr/sbin/pgbouncer"), "pgbouncer"),
    ("metrics tests", ("promtool",), "prometheus"),
    ("backup tests", ("pg_dump",), "postgresql-client"),
    ("a PostgreSQL for the run", ("initdb", "/usr/lib/postgresql/*/bin/initdb"), "postgresql"),
    ("a Redis for the run", ("redis-server",), "redis-server"),
]


def find(candidates: tuple[str, ...]) -> str | None:
    for candidate in candidates:
        if "/" not in candidate:
            found = shutil.which(candidate)
            if found:
                return found
        else:
            matches = sorted(glob.glob(candidate))
            if matches and os.access(matches[-1], os.X_OK):
                return matches[-1]
    return None


def missing_packages() -> list[str]:
    packages = []
    for _need, candidates, package in TOOLS:
        if find(candidates) is None and package not in packages:
            packages.append(package)
    return packages


def tools() -> int:
    packages = missing_packages()
    if not packages:
        return 0
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"make test: installing {' '.join(packages)} (Debian packages)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        # Debian's postgresql package starts a cluster of its own; the run starts a private one.
        still = missing_packages()
        if not still:
            return 0
        packages = still
    print(
        f"make test needs Debian packages it cannot install itself; run: sudo apt-get install -y {' '.join(packages)}"
    )
    return 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"make test: {what} did not start on port {port}")


@contextmanager
def postgresql() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port; yields its DATABASE_URL."""
    initdb = find(TOOLS[5][1])
    if initdb is None:
        raise SystemExit("make test: no initdb (Debian: apt-get install postgresql)")
    bindir = Path(initdb).resolve().parent
    folder = Path(tempfile.mkdtemp(prefix="keychest-test-pg-"))
    # PostgreSQL refuses to run as root: as root, run it as the postgres user Debian's package made.
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = folder / "data"

    def quiet(*args: str, check: bool = True) -> None:
        subprocess.run([*as_user, *args], check=check, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    try:
        quiet(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        quiet(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
        quiet(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "keychest_test")
        yield f"postgres://postgres@127.0.0.1:{port}/keychest_test"
    finally:
        if (data / "postmaster.pid").exists():
            quiet(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def redis() -> Iterator[str]:
    """A throwaway Redis on a free port, nothing written to disk; yields its REDIS_URL."""
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("make test: no redis-server (Debian: apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=tempfile.gettempdir(),
    )
    try:
        wait_port(port, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=20)


def run(command: list[str]) -> int:
    env = dict(os.environ)
    with ExitStack() as stack:
        started = []
        if env.get("KEYCHEST_TEST_SERVICES", "").lower() != "none":
            if not env.get("DATABASE_URL"):
                env["DATABASE_URL"] = stack.enter_context(postgresql())
                started.append(f"PostgreSQL ({env['DATABASE_URL']})")
            if not env.get("REDIS_URL"):
                env["REDIS_URL"] = stack.enter_context(redis())
                started.append(f"Redis ({env['REDIS_URL']})")
        if started:
            print(f"make test: started a private {' and '.join(started)} for this run", flush=True)
        return subprocess.run(command, env=env, check=False).returncode


def main(argv: list[str]) -> int:
    if argv[:1] == ["tools"]:
        return tools()
    if argv[:1] == ["run"] and "--" in argv:
        return run(argv[argv.index("--") + 1 :])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
