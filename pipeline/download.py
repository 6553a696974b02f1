"""``python -m pipeline.download``: the download stage, in pipeline/data/download.py."""

from pipeline.data.download import main
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(main)
