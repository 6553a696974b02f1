"""``python -m pipeline.cluster``: the grid and the tuner on SLURM, in pipeline/ops/cluster/."""

from pipeline.ops.cluster.cli import main
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(main)
