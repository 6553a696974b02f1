"""The grid and the tuner on a SLURM cluster: ``python -m pipeline.cluster``.

- ``cli.py``: the verbs (submit, status, collect, tune) and their flags;
- ``slurm.py``: every call to SLURM's commands (sbatch, squeue, scontrol, sinfo), each
  refusal passed on in one line;
- ``record.py``: what a submission leaves in ``.dvc/tmp/cluster/``: its jobs, each task's
  cells, each cell's state as its task reports it;
- ``submit.py``: the checks, the upstream stages, the array job; ``tune.py`` the tuner's;
- ``task.py``: what one array task runs on its node (worktree, cells, SIGTERM and requeue);
- ``status.py``: the table of cells, ``--wait``'s progress lines, collect.

Only ``pipeline.cluster`` (pipeline/cluster.py, the entry) imports these modules.
"""
