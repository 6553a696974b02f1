"""Records every Python process that starts with this folder on PYTHONPATH: one JSON line
(pid, parent pid, and torchrun's RANK, LOCAL_RANK and WORLD_SIZE) appended to
the file $PROCESS_LOG names. Python imports ``sitecustomize`` at startup, before the main
module, so a test sees which processes a command really ran (test_ddp.py: that
NANOMOE_NPROC=2 trains on two torchrun ranks, not one process). Not a test module."""

import json
import os

if os.environ.get("PROCESS_LOG"):
    record = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        **{k.lower(): os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")},
    }
    with open(os.environ["PROCESS_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")  # one short write: whole lines, appended
