"""``python -m pipeline.grid``: the grid's dvc.yaml stages and targets, in pipeline/ops/grid.py."""

from pipeline.ops.grid import main
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(main)
