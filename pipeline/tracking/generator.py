"""A cell's logged model as MLflow loads it: prompts in, generated text out.

This file is the model's code ("models from code"): ``log_model`` copies it into the logged
model with the ``nanomoe`` package, and ``mlflow.pyfunc.load_model`` runs it, so it imports
nothing of the pipeline. The weights, config, tokenizer and F-gram table are the cell's model
file (``model.pt``), the model's one artifact.

    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    model.predict(["ROMEO:"], params={"max_new_tokens": 100, "seed": 7})  # -> ["ROMEO: ..."]
"""

from __future__ import annotations

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from nanomoe.sample import GENERATION_DEFAULTS, generate, read_checkpoint


class TextGenerator(PythonModel):
    """Each prompt continued by the cell's model, on the CPU; ``top_k`` 0: no filtering."""

    def load_context(self, context) -> None:
        self.model, self.tokenizer = read_checkpoint(context.artifacts["model_file"])

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        """Each prompt's text; ``params``: GENERATION_DEFAULTS' keys, each defaulting there.
        (MLflow reads the signature off the type hints, the params off the input example.)"""
        p = {**GENERATION_DEFAULTS, **(params or {})}
        return [
            generate(
                self.model,
                self.tokenizer,
                prompt,
                int(p["max_new_tokens"]),
                float(p["temperature"]),
                int(p["top_k"]) or None,
                int(p["seed"]),
                "cpu",
            )
            for prompt in model_input
        ]


set_model(TextGenerator())
