from pipeline.stage import run_stage
from pipeline.train.cli import main

run_stage(main)
