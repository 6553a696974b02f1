"""``python -m pipeline.mine_fgrams``: the mine_fgrams stage, in pipeline/data/mine_fgrams.py."""

from pipeline.data.mine_fgrams import main
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(main)
