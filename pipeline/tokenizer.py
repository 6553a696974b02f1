"""``python -m pipeline.tokenizer``: the tokenizer stage, in pipeline/data/tokenizer.py."""

from pipeline.data.tokenizer import main
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(main)
