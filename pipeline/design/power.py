"""Power: the seeds a question needs (filled in below)."""
