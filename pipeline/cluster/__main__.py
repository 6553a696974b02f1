from pipeline.cluster.cli import main
from pipeline.stage import run_stage

run_stage(main)
