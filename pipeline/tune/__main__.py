from pipeline.stage import run_stage
from pipeline.tune.cli import main

run_stage(main)
