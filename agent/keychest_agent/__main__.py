from __future__ import annotations

import sys

from keychest_agent.cli import main

sys.exit(main())
