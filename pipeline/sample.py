"""``python -m pipeline.sample``: text from an MLflow run's model, in pipeline/ops/sample.py."""

import sys

from pipeline.ops.sample import main

if __name__ == "__main__":
    sys.exit(main())
