"""``python -m pipeline.share``: this clone's cells to the team's DVC remote (pipeline/ops/)."""

from pipeline.ops.share import main
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(main)
