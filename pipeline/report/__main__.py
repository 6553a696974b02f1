from pipeline.report.cli import main
from pipeline.stage import run_stage

run_stage(main)
