"""A cell's logged model: MLflow's pyfunc flavour around the cell's model file, and finding it
again from a run.

Why pyfunc and not ``mlflow.pytorch``: a user's question is "what does this cell write?", and
the answer needs the tokenizer and the F-gram table as much as the weights. A ``PythonModel``
(``generator.py``) takes prompts and returns text; ``mlflow.pytorch`` would return logits of
token ids, and pickle the GPT class by reference. The model's one artifact is the model file
the cell already wrote (``model.pt``: weights, config, tokenizer, F-gram table), which
``python -m nanomoe.sample`` reads too, and its code is ``generator.py`` with the ``nanomoe``
package, so it loads wherever its requirements are installed, with no project checkout.

Its requirements are the model library's dependencies and MLflow at requirements.lock's
versions, written out, never inferred: logging imports nothing to find them, and loading
installs nothing.

The model is logged at the cell's last step, after its final metrics, so MLflow links them
(``final_val_bpb`` and the rest) to the model: the Models tab compares cells by them.
"""

from __future__ import annotations

import re
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
from mlflow.models import Model

import nanomoe
from nanomoe.sample import GENERATION_DEFAULTS
from pipeline.tracking.defaults import fluent_defaults
from pipeline.tracking.store import Client, Run, retry_locked, run_model_id, tracking_uri

NAME = "model"  # the model's name in its run: runs:/<run id>/model
ARTIFACT = "model.pt"  # the model file, in the model: runs:/<run id>/model/artifacts/model.pt
GENERATOR = Path(__file__).with_name("generator.py")
LIBRARY = Path(nanomoe.__file__).parent


def requirements(root: Path) -> list[str]:
    """``name==version`` for MLflow and each dependency of the model library (the installed
    ``nanomoe``'s, which are pyproject.toml's), at ``root``'s requirements.lock versions; with
    no lock there (a bare copy of the code), at the installed versions, less a local tag
    such as ``+cpu`` that no index serves."""
    lock = root / "requirements.lock"
    text = lock.read_text(encoding="utf-8") if lock.is_file() else ""
    pins = {m[1].lower(): m[2] for m in re.finditer(r"(?m)^([A-Za-z0-9_.-]+)==(\S+)", text)}
    deps = [d for d in metadata.requires("nanomoe") or [] if "extra ==" not in d]
    names = ["mlflow", *(re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0] for d in deps)]
    return [f"{n}=={pins.get(n.lower()) or metadata.version(n).split('+')[0]}" for n in names]


def log_model(run: Run, model_file: bytes, step: int, prompt: str, root: Path) -> str:
    """Log the model file ``model_file`` as run ``run``'s model at ``step``, with ``prompt``
    its input example and ``root``'s lock its requirements; its model id."""
    experiment = run.client.get_run(run.id).info.experiment_id
    # the signature: prompts in, texts out (generator.py's type hints), with the example's
    # params and their values as its defaults; MLflow runs the example once to check it
    example = ([prompt], GENERATION_DEFAULTS)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / ARTIFACT  # MLflow names the artifact after the file
        staged.write_bytes(model_file)
        with fluent_defaults(experiment):
            info = retry_locked(Model.log)(
                artifact_path=None,
                name=NAME,
                flavor=mlflow.pyfunc,
                run_id=run.id,
                step=step,
                python_model=str(GENERATOR),
                artifacts={"model_file": str(staged)},
                code_paths=[str(LIBRARY)],
                input_example=example,
                pip_requirements=requirements(root),
                model_type="nanomoe",
            )
    return info.model_id


def fetch_model_file(run_id: str, folder: str) -> str:
    """Download run ``run_id``'s model file into ``folder``; its local path. LookupError if
    the store has no such run, FileNotFoundError if the run logged no model."""
    client = Client()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise LookupError(f"no such run in {tracking_uri()}") from None
    if run_model_id(client, run_id) is None:
        raise FileNotFoundError(f"run {run.info.run_name!r} ({run.info.status}) has no model")
    with fluent_defaults():  # the run's model is looked up in MLflow's default store
        return mlflow.artifacts.download_artifacts(
            f"runs:/{run_id}/{NAME}/artifacts/{ARTIFACT}", dst_path=folder
        )
