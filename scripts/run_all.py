"""Run the web server, one Celery worker and the beat scheduler together in the foreground.

Ctrl-C (or any of the three exiting) stops all three. Used by `make run` and `make demo`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PYTHON = sys.executable


def main() -> int:
    host = os.environ.get("KEYCHEST_RUN_ADDRESS", "127.0.0.1:8000")
    processes = {
        "web": [PYTHON, "manage.py", "runserver", host, "--noreload"],
        "worker": [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "keychest",
            "worker",
            "-l",
            "info",
            "--concurrency",
            "2",
            "-Q",
            "celery",
        ],
        "beat": [PYTHON, "-m", "celery", "-A", "keychest", "beat", "-l", "info", "--pidfile="],
    }
    running = {name: subprocess.Popen(cmd) for name, cmd in processes.items()}  # noqa: S603
    print(
        f"\nKeyChest is starting at http://{host}/ — sign up there; with the console email backend the "
        "verification link is printed in this terminal (EMAIL_URL=file:///dir writes it to a folder).\n"
        "Press Ctrl-C to stop the web server, the worker and beat.\n",
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
