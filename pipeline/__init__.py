"""The orchestration layer: DVC stages, the Optuna tuner, the benchmark, MLflow glue."""
