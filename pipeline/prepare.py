"""``python -m pipeline.prepare``: the prepare stage, in pipeline/data/prepare.py."""

from pipeline.data.prepare import main
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(main)
