"""The train stage: one cell of the grid (a level of every switch, one seed), ``python -m
pipeline.train`` (``cli.py``; ``torchrun -m pipeline.train`` for several GPUs).

- ``cli.py``: the command, its flags checked against params.yaml's grid;
- ``cell.py``: a cell's configs, data and F-grams, and its training (``fit_cell``);
- ``cell_run.py``: the cell's MLflow run, its logged files and tags;
- ``run_callback.py``: the trainer's metrics into MLflow (the tuner's trials use it too);
- ``resume.py``: the checkpoint a cell resumes from after any interruption;
- ``preempt.py``: SIGTERM while training saves a checkpoint and exits 143 (its exit code is
  what the cluster's tasks requeue on);
- ``launch.py``: torchrun for ``NANOMOE_NPROC`` processes.

Imported from outside only for ``cell_run``'s names (workers, sample), ``run_callback`` (the
tuner), ``preempt``'s exit code and ``resume``'s state file (the cluster commands).
"""
