"""The operator commands: what a user runs around ``dvc repro``, never a DVC stage.

- ``grid.py``: ``python -m pipeline.grid``, dvc.yaml's grid stages from params.yaml and the
  switch registry, and ``--targets`` (the cells' stage names);
- ``workers.py``: ``python -m pipeline.workers -j N``, the grid on N workers on one machine;
- ``worktree.py``: a git worktree on this clone's DVC cache, for a worker or a cluster task;
- ``share.py``: ``python -m pipeline.share``, this clone's cells to the team's DVC remote;
- ``sample.py``: ``python -m pipeline.sample``, text from an MLflow run's model;
- ``cluster/``: ``python -m pipeline.cluster``, the grid and the tuner on SLURM.

Each is run through its entry module at pipeline/'s top level; nothing outside this folder
imports it.
"""
