"""`keychest-agent`: enrol once with a token, then scan the work list on the server's cadence.

    keychest-agent enrol --server https://keychest.example.com --token kcat_...
    keychest-agent run

State (the agent key, queued results) lives in --state-dir (default ~/.keychest-agent, or
$KEYCHEST_AGENT_STATE). Every option also reads an environment variable (for the Docker image).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import logging
import os
import random
import signal
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from kcproto import agentwire, netguard, sweep, tlsprobe
from keychest_agent import __version__
from keychest_agent.client import Client, Refused, Unauthorized, Unavailable
from keychest_agent.queue import ResultQueue
from keychest_agent.scan import ScanOptions, scan_targets

logger = logging.getLogger("keychest_agent")

EXIT_REVOKED = 3
EXIT_NOT_ENROLLED = 4
SKEW_WARN_SECONDS = 60.0
# Pages of the work list followed in one pass (of up to KEYCHEST_AGENT_WORK_PAGE targets each).
MAX_WORK_PAGES = 1000


class State:
    """The agent's files: `agent.json` (server, key; mode 0600) and the result queue."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.file = folder / "agent.json"
        self.queue = ResultQueue(folder / "queue")

    def load(self) -> dict[str, Any] | None:
        if not self.file.exists():
            return None
        data: dict[str, Any] = json.loads(self.file.read_text(encoding="utf-8"))
        return data

    def save(self, data: dict[str, Any]) -> None:
        temporary = self.folder / ".agent.json.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temporary, self.file)


class InsecureServer(Exception):
    """A plain-HTTP server URL off this machine: the agent key would cross the network in clear."""


def check_server_url(server: str, *, allow_http: bool = False) -> str:
    """The server URL, refused when it is plain HTTP to anything but this machine (loopback)."""
    parts = urllib.parse.urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InsecureServer(f"{server!r} is not an http(s) URL")
    if parts.scheme == "http" and not allow_http:
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if not loopback:
            raise InsecureServer(f"{server} is plain HTTP: use https:// (or --allow-http on a trusted network)")
    return server.rstrip("/")


def enrol(state: State, *, server: str, token: str, ca_file: str = "") -> dict[str, Any]:
    """Exchange the one-time token for this agent's key and keep it in the state folder."""
    client = Client(server=server, ca_file=ca_file)
    answer = client.request("POST", "/api/v1/agent/enrol", {"token": token, "version": __version__})
    data = {"server": server, "key": answer["key"], "agent": answer["agent"], "ca_file": ca_file}
    state.save(data)
    logger.info("enrolled as agent %s", answer["agent"])
    return data


def flush(state: State, client: Client) -> int:
    """Send queued batches, oldest first; stop at the first transient failure. Returns batches sent."""
    sent = 0
    for path in state.queue.pending():
        body = state.queue.read(path)
        try:
            answer = client.request("POST", str(body.pop("path", "/api/v1/agent/results")), body)
        except Refused as exc:
            logger.error("the server refused batch %s (%s); kept aside in queue/rejected", path.name, exc)
            state.queue.reject(path)
            continue
        state.queue.done(path)
        sent += 1
        for item in answer.get("refused", []):
            logger.warning("result for %s refused: %s", item.get("target"), item.get("error"))
    return sent


def _skew(work: dict[str, Any], asked_at: dt.datetime, answered_at: dt.datetime) -> float | None:
    """Our clock minus the server's, taking the request's midpoint as the server's moment."""
    try:
        server_time = dt.datetime.fromisoformat(str(work["server_time"]))
    except (KeyError, ValueError):
        return None
    midpoint = asked_at + (answered_at - asked_at) / 2
    return (midpoint - server_time).total_seconds()


def cycle(state: State, client: Client, options: ScanOptions) -> int:
    """One pass: flush the queue, fetch work, scan what is due, queue and send the results.
    Returns the cadence (seconds) the server asks for."""
    flush(state, client)
    asked = dt.datetime.now(dt.UTC)
    work = client.request("GET", "/api/v1/agent/work")
    skew = _skew(work, asked, dt.datetime.now(dt.UTC))
    if skew is not None and abs(skew) > SKEW_WARN_SECONDS:
        logger.warning("this machine's clock is %.0f s off the server's: fix NTP (the server reports it too)", skew)
    ca_bundle = str(work.get("ca_bundle", ""))
    page, pages = work, 1
    while True:
        scan_page(state, client, page, ca_bundle, options)
        after = page.get("next")
        if not after or pages >= MAX_WORK_PAGES:
            break
        page = client.request("GET", "/api/v1/agent/work?" + urllib.parse.urlencode({"after": str(after)}))
        pages += 1
    ranges = [agentwire.RangeTarget.from_dict(item) for item in work.get("ranges", [])]
    due_ranges = [r for r in ranges if r.due]
    if due_ranges:
        rate = min(options.sweep_rate, float(work.get("sweep_rate") or options.sweep_rate))
        for report in sweep_ranges(due_ranges, options, sweep.RateLimiter(rate)):
            state.queue.put_body("/api/v1/agent/sweeps", report)
    flush(state, client)
    return int(work.get("cadence") or 300)


def scan_page(state: State, client: Client, page: dict[str, Any], ca_bundle: str, options: ScanOptions) -> None:
    """Scan the due targets of one page of the work list, queue the results and send them."""
    targets = [agentwire.Target.from_dict(t) for t in page.get("targets", [])]
    due = [t for t in targets if t.due]
    if not due:
        return
    results = tlsprobe.run_sync(scan_targets(due, ca_bundle=ca_bundle, options=options))
    for batch in agentwire.batches(results):
        state.queue.put(batch)
    for item in results:
        logger.info("scanned %s: %s", item["target"], json.dumps(item["agent_verdict"], sort_keys=True))
    flush(state, client)


def sweep_ranges(
    ranges: list[agentwire.RangeTarget], options: ScanOptions, shared: sweep.RateLimiter
) -> list[dict[str, Any]]:
    """Sweep the due ranges together with the scanner's sweep code, politely: each range under its
    own rate limit and all of them under `shared`, one global limit. Returns the sweep reports,
    each range's in size-bounded parts."""
    results = tlsprobe.run_sync(
        sweep.sweep_ranges(
            [sweep.RangeJob(r.cidr, r.ports, r.rate_per_second, r.names) for r in ranges],
            shared=shared,
            allow_private=True,
            deadline=options.deadline,
            connect_timeout=options.connect_timeout,
        )
    )
    reports: list[dict[str, Any]] = []
    for ip_range, result in zip(ranges, results, strict=True):
        logger.info(
            "swept %s: %d TLS services in %d attempts, %.1f s",
            ip_range.cidr,
            len(result.services),
            result.attempts,
            result.seconds,
        )
        reports += agentwire.sweep_reports(ip_range.id, [s.as_dict() for s in result.services], result.seconds)
    return reports


def run(
    state: State, options: ScanOptions, *, once: bool = False, max_sleep: float | None = None, attempts: int = 5
) -> int:
    data = state.load()
    if data is None:
        logger.error("not enrolled: run `keychest-agent enrol --server URL --token TOKEN` first")
        return EXIT_NOT_ENROLLED
    client = Client(server=data["server"], key=data["key"], ca_file=data.get("ca_file", ""), attempts=attempts)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    failures = 0
    while not stopping:
        try:
            cadence = cycle(state, client, options)
            failures = 0
        except Unauthorized:
            logger.error("the server does not accept this agent's key (revoked?): stopping")
            return EXIT_REVOKED
        except (Unavailable, Refused) as exc:
            failures += 1
            cadence = min(300 * failures, 3600)
            logger.warning("server unavailable (%s); results stay queued on disk", exc)
        if once:
            return 0
        pause = cadence * random.uniform(0.9, 1.1)
        if max_sleep is not None:
            pause = min(pause, max_sleep)
        deadline = time.monotonic() + pause
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    return 0


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="keychest-agent", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"keychest-agent {__version__}")
    parser.add_argument(
        "--state-dir",
        default=env("KEYCHEST_AGENT_STATE") or str(Path.home() / ".keychest-agent"),
        help="where the agent key and queued results live",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    enrol_cmd = sub.add_parser("enrol", help="exchange a one-time token for this agent's key")
    enrol_cmd.add_argument("--server", default=env("KEYCHEST_AGENT_SERVER"), required=not env("KEYCHEST_AGENT_SERVER"))
    enrol_cmd.add_argument("--token", default=env("KEYCHEST_AGENT_TOKEN"), required=not env("KEYCHEST_AGENT_TOKEN"))
    enrol_cmd.add_argument(
        "--ca-file", default=env("KEYCHEST_AGENT_CA_FILE", ""), help="CA bundle for the server's HTTPS"
    )
    enrol_cmd.add_argument("--allow-http", action="store_true", help="accept a plain-HTTP server URL off this machine")
    run_cmd = sub.add_parser("run", help="scan the work list on the server's cadence (enrols first if given a token)")
    run_cmd.add_argument("--once", action="store_true", help="one pass, then exit")
    run_cmd.add_argument("--server", default=env("KEYCHEST_AGENT_SERVER"))
    run_cmd.add_argument("--token", default=env("KEYCHEST_AGENT_TOKEN"))
    run_cmd.add_argument("--ca-file", default=env("KEYCHEST_AGENT_CA_FILE", ""))
    run_cmd.add_argument("--allow-http", action="store_true", help="accept a plain-HTTP server URL off this machine")
    run_cmd.add_argument(
        "--nameserver",
        action="append",
        default=[s for s in (env("KEYCHEST_AGENT_NAMESERVERS") or "").split(",") if s],
        help="DNS server ip[:port] (repeatable; default: the system's)",
    )
    run_cmd.add_argument("--deadline", type=float, default=float(env("KEYCHEST_AGENT_DEADLINE") or 10.0))
    run_cmd.add_argument(
        "--sweep-rate",
        type=float,
        default=float(env("KEYCHEST_AGENT_SWEEP_RATE") or 50.0),
        help="connection attempts per second across all ranges swept (each range keeps its own limit too)",
    )
    run_cmd.add_argument("--concurrency", type=int, default=int(env("KEYCHEST_AGENT_CONCURRENCY") or 50))
    run_cmd.add_argument(
        "--attempts",
        type=int,
        default=int(env("KEYCHEST_AGENT_ATTEMPTS") or 5),
        help="tries per request (exponential back-off between them)",
    )
    run_cmd.add_argument(
        "--max-sleep", type=float, default=None, help="cap the pause between passes (seconds; for tests)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    state = State(Path(args.state_dir))
    try:
        if args.command == "enrol":
            server = check_server_url(args.server, allow_http=args.allow_http)
            enrol(state, server=server, token=args.token, ca_file=args.ca_file)
            return 0
        if state.load() is None and args.server and args.token:
            server = check_server_url(args.server, allow_http=args.allow_http)
            enrol(state, server=server, token=args.token, ca_file=args.ca_file)
        options = ScanOptions(
            deadline=args.deadline,
            connect_timeout=min(5.0, args.deadline),
            dns_timeout=min(5.0, args.deadline),
            concurrency=args.concurrency,
            sweep_rate=max(0.1, args.sweep_rate),
            nameservers=tuple(netguard.parse_nameservers(args.nameserver)),
        )
        return run(state, options, once=args.once, max_sleep=args.max_sleep, attempts=max(1, args.attempts))
    except (Refused, InsecureServer) as exc:
        logger.error("%s", exc)
        return 2
    except Unavailable as exc:
        logger.error("the server is unavailable: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
