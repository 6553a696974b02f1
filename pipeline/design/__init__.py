"""Designing the ablation: fractional factorials (``fraction.py``, read with params.yaml's
``grid:`` by ``pipeline/params/``) and power, the seeds a question needs (``power.py``,
``python -m pipeline.plan``: ``plan.py``)."""
