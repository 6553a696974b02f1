"""python -m pipeline.plan (filled in below)."""
