"""The Optuna tuner: ``python -m pipeline.tune --trials 50`` (see cli.py).

One module per concern: ``cli`` (the command), ``settings`` (the tune: section and the search
space), ``inputs`` (upstream data, the study's fingerprint), ``objective`` (one trial),
``workers`` (claiming, reaping, the loop), ``storage`` (journal or database, locks,
heartbeats), ``runs`` (the study in MLflow) and ``report`` (best.json, trials.csv, plots).
"""
