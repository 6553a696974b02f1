"""``python -m pipeline.workers``: several workers on one machine, in pipeline/ops/workers.py."""

from pipeline.ops.workers import main
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(main)
