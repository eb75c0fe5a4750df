"""Run a local RDAP server for demos: `python -m lab.rdap --bootstrap var/lab-rdap-bootstrap.json`.

Then `KEYCHEST_RDAP_BOOTSTRAP=var/lab-rdap-bootstrap.json KEYCHEST_ALLOW_PRIVATE_TARGETS=1
python manage.py rdap_check www.example.test`. Every domain under .test and .example is
registered, with an expiry made up from its name.
"""

from __future__ import annotations

import argparse
import time

from lab.rdap.server import LocalRDAP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="var/lab-rdap-bootstrap.json", help="where to write the bootstrap")
    args = parser.parse_args()
    server = LocalRDAP().start()
    path = server.write_bootstrap(args.bootstrap)
    print(f"RDAP server at {server.url}; bootstrap written to {path}: export KEYCHEST_RDAP_BOOTSTRAP={path}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
