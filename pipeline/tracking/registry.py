"""The ablation in MLflow's terms: its summary run the parent of the cell runs it judged, and
each variant's model registered, with the best one's alias.

**Parent.** The report sets MLflow's ``mlflow.parentRunId`` on each cell run that has none
yet, whoever trained it (this machine, a worker, a cluster task, or a run restored by DVC's
run cache), so ``mlflow ui`` shows the ablation as one run to expand. A cell run already under
an earlier ablation's summary keeps that parent. Every cell run's ``ablations`` tag lists the
summary runs that judged it, its parent first: the UI shows it as a column (Columns ->
Tags -> ablations) and finds a later ablation's cells with
``tags.ablations LIKE '%<summary run id>%'``.

**Registry.** One registered model per experiment, named after it (``nanomoe-ablation``). Each
variant's model from its first seed's run (params.yaml's first seed, the same for every
variant: picking each variant's best seed would register its luckiest draw) is a version,
tagged with its variant; a run already registered under the name is not registered again, so
running the report again with nothing changed makes no new version. Aliases: ``best`` on the
report's single best variant; when variants are tied with the lowest, ``tied-best-1`` ..
``tied-best-k`` in the order of their mean loss, and no ``best``; stale ones are removed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import mlflow

from pipeline.tracking.defaults import fluent_defaults
from pipeline.tracking.store import Client, run_model_id

PARENT = "mlflow.parentRunId"
VERSIONS_TAG = "mlflow.modelVersions"  # a logged model's registered versions
ABLATIONS = "ablations"


def adopt_cells(client: Client, summary_id: str, cell_run_ids: Sequence[str]) -> int:
    """Make ``summary_id`` the parent of each cell run that has none, and add it to every
    cell run's ``ablations`` tag; how many runs it adopted."""
    adopted = 0
    for run_id in cell_run_ids:
        tags = client.get_run(run_id).data.tags
        judged = [r for r in tags.get(ABLATIONS, "").split(",") if r]
        if PARENT not in tags:
            client.set_tag(run_id, PARENT, summary_id)
            adopted += 1
        if summary_id not in judged:
            client.set_tag(run_id, ABLATIONS, ",".join([*judged, summary_id]))
    return adopted


def link_version(client: Client, model_id: str, name: str, version: int | str) -> None:
    """List version ``version`` of ``name`` in the logged model's ``mlflow.modelVersions``
    tag, as ``mlflow.register_model`` does: the Models tab's "Registered models" column."""
    tags = client.get_logged_model(model_id).tags
    listed = json.loads(tags.get(VERSIONS_TAG, "[]"))
    entry = {"name": name, "version": int(version)}
    if entry not in listed:
        client.set_logged_model_tags(model_id, {VERSIONS_TAG: json.dumps([*listed, entry])})


def aliases_for(best: str | None, tied: Sequence[str]) -> dict[str, str]:
    """Alias -> variant: ``best`` on a single best; ``tied-best-<i>`` on each of ``tied`` (in
    order) when there is none and several are tied; else none."""
    if best:
        return {"best": best}
    return {f"tied-best-{i}": v for i, v in enumerate(tied, 1)} if len(tied) > 1 else {}


def register_variants(
    client: Client, name: str, runs: Mapping[str, str], best: str | None, tied: Sequence[str]
) -> dict[str, str]:
    """Register each variant's model (``runs``: variant -> the run that logged it) under
    ``name``, once per run; set ``best`` on ``best``'s version, or ``tied-best-<i>`` on
    ``tied``'s (in order) when ``best`` is None and several are tied. Variant -> version;
    a run with no logged model (trained before models were logged) is left out."""
    try:
        client.create_registered_model(name, description="NanoMoE ablation variants")
    except mlflow.exceptions.MlflowException as err:
        if "already exists" not in str(err).lower():
            raise
    versions = {}
    for variant, run_id in runs.items():
        model_id = run_model_id(client, run_id)
        if model_id is None:
            continue
        found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if found:
            version = found[0].version
        else:
            with fluent_defaults():  # where the registry looks the logged model up
                version = client.create_model_version(
                    name, f"models:/{model_id}", run_id=run_id, tags={"variant": variant},
                    model_id=model_id,
                ).version  # fmt: skip
        versions[variant] = str(version)
        link_version(client, model_id, name, version)
    wanted = {a: versions[v] for a, v in aliases_for(best, tied).items() if v in versions}
    for alias in client.get_registered_model(name).aliases:
        if alias not in wanted and (alias == "best" or alias.startswith("tied-best-")):
            client.delete_registered_model_alias(name, alias)
    for alias, version in wanted.items():
        client.set_registered_model_alias(name, alias, version)
    return versions
