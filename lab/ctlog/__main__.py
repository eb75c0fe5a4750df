"""Run a local CT log for demos: `python -m lab.ctlog --api static --entries 1000 --log-list /tmp/ll.json`.

Then `KEYCHEST_CT_LOG_LIST=/tmp/ll.json python manage.py ct_logs --start-at <id> 0` and
`python manage.py ct_ingest`. New certificates are added every few seconds.
"""

from __future__ import annotations

import argparse
import time

from lab.ctlog.server import RFC6962, STATIC, LocalCTLog, write_log_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", choices=[RFC6962, STATIC, "both"], default="both")
    parser.add_argument("--entries", type=int, default=1000, help="entries to start with")
    parser.add_argument("--log-list", default="var/lab-ct-log-list.json", help="where to write the log list")
    parser.add_argument("--rate", type=float, default=5.0, help="new entries per second afterwards")
    args = parser.parse_args()
    apis = [RFC6962, STATIC] if args.api == "both" else [args.api]
    logs = [LocalCTLog(api=api, seed=i + 1).start() for i, api in enumerate(apis)]
    for log in logs:
        log.add_random(args.entries)
        print(f"{log.api} log at {log.url} (log id {log.log_id}), {log.published_size} entries")
    path = write_log_list(args.log_list, logs)
    print(f"log list written to {path}: export KEYCHEST_CT_LOG_LIST={path}")
    try:
        while True:
            time.sleep(max(0.2, 1.0 / max(args.rate, 0.01)) * 5)
            for log in logs:
                log.add_random(max(1, int(args.rate * 5)))
    except KeyboardInterrupt:
        for log in logs:
            log.stop()


if __name__ == "__main__":
    main()
