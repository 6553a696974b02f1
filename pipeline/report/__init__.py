"""The report stage: ``python -m pipeline.report`` (``cli.py``) reads every train cell's files
and writes experiments/report.md, ablation.csv, summary.json and the plots.

- ``results.py``: the finished cells on disk, every cell of the grid x every seed;
- ``provenance.py``: what the cells trained under, and which MLflow runs hold them;
- ``stats.py``: a two-level factorial's effects and their noise;
- ``ranking.py``: the variants by mean final loss, and which are tied with the best;
- ``verdicts.py``: each effect real, negligible or undetermined; equivalence to the best;
- ``analysis.py``: the ablation judged on final_val_bpb, effects with their margins;
- ``markdown.py`` and ``effects_text.py``: report.md;
- ``summary.py``: summary.json and the ablation's one MLflow summary run.

``stats`` is the one module imported from outside: the tuner's ``--confirm`` tests its
finalists with it.
"""
