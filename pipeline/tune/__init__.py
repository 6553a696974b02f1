"""The Optuna tuner: ``python -m pipeline.tune --trials 50`` (see cli.py).

One module per concern: ``cli`` (the command: its arguments, checked against params.yaml),
``session`` (a worker's steps, from the inputs to the report), ``settings`` (the tune:
section and the search space), ``inputs`` (upstream data, the study's fingerprint),
``objective`` (one trial), ``workers`` (claiming, reaping, the loop), ``storage`` (journal
or database, the study in it, locks, heartbeats), ``runs`` (the study in MLflow) and
``report`` (best.json, trials.csv, plots, the printed summary).
"""
