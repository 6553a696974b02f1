"""``python -m pipeline.plan``: the seeds a question needs (pipeline/design/plan.py)."""

from pipeline.design.plan import main
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(main)
