"""Run the web server, one Celery worker, the beat scheduler and the CT follower together in the
foreground: the same four processes as docker-compose.yml's web, worker, beat and ct services.

Ctrl-C (or any of the four exiting) stops all four. Used by `make run` and `make demo`. The CT
follower follows the logs only when KEYCHEST_CT_INGEST is on (off by default with DEBUG=1, so a
laptop does not start reading the real logs); otherwise it says so and idles.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PYTHON = sys.executable


def processes(host: str) -> dict[str, list[str]]:
    """The four processes, named as their docker-compose.yml services."""
    return {
        "web": [PYTHON, "manage.py", "runserver", host, "--noreload"],
        "worker": [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "keychest",
            "--quiet",  # no start-up banner listing every task; the log lines stay
            "worker",
            "-l",
            "info",
            "--concurrency",
            "2",
            "-Q",
            "celery",
        ],
        "beat": [PYTHON, "-m", "celery", "-A", "keychest", "beat", "-l", "info", "--pidfile="],
        "ct": [PYTHON, "manage.py", "ct_ingest", "--follow", "--if-enabled"],
    }


def main() -> int:
    host = os.environ.get("KEYCHEST_RUN_ADDRESS", "127.0.0.1:8000")
    running = {name: subprocess.Popen(cmd) for name, cmd in processes(host).items()}  # noqa: S603
    sign_in_as = os.environ.get("KEYCHEST_RUN_SIGN_IN_AS", "")  # make demo's account
    how = (
        f"sign in as {sign_in_as}"
        if sign_in_as
        else "sign up there; with the console email backend the verification link is printed in this "
        "terminal (EMAIL_URL=file:///dir writes it to a folder)"
    )
    print(
        f"\nKeyChest is starting at http://{host}/ — {how}.\n"
        "Press Ctrl-C to stop the web server, the worker, beat and the CT follower.\n",
        flush=True,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    try:
        while not stopping:
            for name, proc in running.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping the others", flush=True)
                    exit_code = proc.returncode or 1
                    stopping = True
                    break
            time.sleep(0.3)
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in running.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
