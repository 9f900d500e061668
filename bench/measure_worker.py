"""Run `relay worker --burst` and print its peak memory as JSON on stdout.

Used by bench/pipeline.py. The worker's own peak resident size, and the
largest of its work horses (RQ forks one per job and waits for it, so the
children's figure is the largest horse's).
"""

from __future__ import annotations

import json
import resource
import sys

from relay.cli import main

if __name__ == "__main__":
    sys.argv = ["relay", "worker", "--burst"]
    try:
        main()
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    print(
        json.dumps(
            {
                "worker_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "horse_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            }
        )
    )
