"""Stage boundaries: download, params validation and the train stage's pre-flight checks."""

from __future__ import annotations

import json

import pytest
import yaml
from _project import CORPUS, make_project, run_module

from pipeline.params import load_params
from pipeline.stage import ParamsError, StageError

CHAR = ["--tokenizer", "char"]  # the char tokenizer's stage instances, and a char cell
TRAIN_ARGS = ["--rope", "true", "--moe", "true", "--fgram", "false", *CHAR, "--seed", "1"]


def _env(root):
    from _project import env_for

    return env_for(root)


def _write_params(root, mutate):
    params = yaml.safe_load((root / "params.yaml").read_text())
    mutate(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda p: p["model"].update(n_head=3), "model.n_embd"),
        (lambda p: p["model"].update(dropout=-0.1), "model.dropout"),
        (lambda p: p["moe"].update(top_k=9), "moe.top_k"),
        (lambda p: p["moe"].update(n_experts=1), "moe.n_experts"),
        (lambda p: p["fgram"].update(max_n=20, mine_max_n=20), "fgram.max_n"),
        (lambda p: p["train"].update(batch_size="12"), "train.batch_size"),
        (lambda p: p["fgram"].update(mine_max_n=2, max_n=3), "fgram.mine_max_n"),
        (lambda p: p["train"].update(learning_rate=-1.0), "train.learning_rate"),
        (lambda p: p["train"].update(warmup=5), "train"),
        (lambda p: p["model"].update(n_layers=2), "model"),
        (lambda p: p["data"].update(sha256="xyz"), "data.sha256"),
        (lambda p: p.update(seeds=[]), "seeds"),
        (lambda p: p["sample"].update(temperature=0), "sample.temperature"),
        (lambda p: p["tokenizer"].update(train_max_chars=0), "tokenizer.train_max_chars"),
        (lambda p: p["tokenizer"].update(vocab_sizes=512), "tokenizer"),
    ],
)
def test_bad_params_fail_when_read_naming_the_key(tmp_path, mutate, key):
    root = make_project(tmp_path)
    _write_params(root, mutate)
    with pytest.raises(ParamsError) as err:
        load_params(root / "params.yaml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("params.yaml: ") and key in message


def test_shipped_params_are_valid_and_sized_like_nanogpt_cpu():
    p = load_params()
    m = p.model
    assert (m.block_size, m.n_layer, m.n_head, m.n_embd) == (64, 4, 4, 128)
    assert (m.dropout, m.bias, m.rope_base) == (0.0, False, 10000.0)
    assert p.train.max_iters == 2000 and p.train.batch_size == 12
    assert (m.n_experts, m.top_k, m.fgram_max_n) == (4, 1, 3)


@pytest.mark.parametrize(
    "args",
    [
        "--rope maybe --moe true --fgram false --tokenizer char --seed 1".split(),
        "--rope true --moe true --tokenizer char --seed 1".split(),  # --fgram missing
        "--rope true --moe true --fgram false --tokenizer wordpiece --seed 1".split(),
        "--rope true --moe true --fgram false --seed 1".split(),  # --tokenizer missing
    ],
)
def test_train_stage_rejects_bad_flags_before_training(tmp_path, args):
    root = make_project(tmp_path)
    out = run_module(root, "pipeline.train", *args)
    assert out.returncode == 2
    assert "usage:" in out.stderr and "error:" in out.stderr
    assert not (root / "experiments").exists()
    assert not (root / "mlflow.db").exists()


def test_train_stage_rejects_bad_params_in_one_line_before_training(tmp_path):
    root = make_project(tmp_path)
    _write_params(root, lambda p: p["moe"].update(top_k=5))
    out = run_module(root, "pipeline.train", *TRAIN_ARGS)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "moe.top_k" in lines[0], out.stderr
    assert not (root / "experiments").exists()
    assert not (root / "mlflow.db").exists()


def test_train_stage_asks_for_prepare_when_data_is_missing(tmp_path):
    """Kills: Layout.require naming the prepare stage without its matrix instance (a user
    running ``dvc repro prepare@...`` needs the tokenizer's)."""
    root = make_project(tmp_path)
    out = run_module(
        root,
        "pipeline.train",
        "--rope",
        "false",
        "--moe",
        "false",
        "--fgram",
        "true",
        "--tokenizer",
        "char",
        "--seed",
        "1",
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "data/char/prepared" in out.stderr and "dvc repro prepare@char" in out.stderr


def test_mine_stage_writes_fgrams_and_coverage_metrics(tmp_path):
    root = make_project(tmp_path)
    env = _env(root)
    done = run_module(root, "pipeline.download", env=env)
    assert done.returncode == 0, done.stderr
    for stage in ("tokenizer", "prepare", "mine_fgrams"):
        done = run_module(root, f"pipeline.{stage}", *CHAR, env=env)
        assert done.returncode == 0, done.stderr
    doc = json.loads((root / "data/char/fgrams.json").read_text(encoding="utf-8"))
    assert doc["fgrams"] and all(2 <= len(g["ids"]) <= 4 for g in doc["fgrams"])
    assert all(g["text"] in CORPUS for g in doc["fgrams"])
    assert "the " in {g["text"] for g in doc["fgrams"]}  # frequent in the corpus
    metrics = json.loads((root / "data/char/fgram_metrics.json").read_text())
    cover = metrics["coverage_per_max_n"]
    assert 0 < cover["2"] <= cover["3"] <= cover["4"] <= 1
    assert sum(metrics["count_per_n"].values()) == metrics["count"] == len(doc["fgrams"])


def test_mine_stage_mines_only_the_first_mine_max_tokens_train_tokens(tmp_path, monkeypatch):
    """Mutation killed: fgram.mine_max_tokens read but the whole train split mined."""
    import numpy as np

    from pipeline.data import download, mine_fgrams, prepare, tokenizer

    root = make_project(tmp_path, overrides={"fgram": {"mine_max_tokens": 300}})
    monkeypatch.chdir(root)
    assert download.main([]) == 0
    for stage in (tokenizer, prepare, mine_fgrams):
        assert stage.main(list(CHAR)) == 0
    head = np.fromfile(root / "data/char/prepared/train.bin", dtype=np.uint16)[:300].tolist()
    doc = json.loads((root / "data/char/fgrams.json").read_text(encoding="utf-8"))
    for g in doc["fgrams"]:
        n = len(g["ids"])
        assert g["count"] == sum(head[i : i + n] == g["ids"] for i in range(len(head) - n + 1))


def _prepared_project(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    for k in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
        monkeypatch.delenv(k, raising=False)
    from pipeline.data import download, prepare, tokenizer

    monkeypatch.setenv("NANOMOE_DATA_URL", str(root / "corpus.txt"))
    assert download.main([]) == 0
    assert tokenizer.main(list(CHAR)) == 0 and prepare.main(list(CHAR)) == 0
    return root


def _runs(root):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["nanomoe-ablation"])


def test_a_training_run_that_fails_is_marked_failed_in_mlflow(tmp_path, monkeypatch):
    from nanomoe.trainer import NonFiniteLossError, Trainer
    from pipeline.train import cli as train

    root = _prepared_project(tmp_path, monkeypatch)

    def explode(self, resume_from=None):
        raise NonFiniteLossError(3, float("nan"))

    monkeypatch.setattr(Trainer, "fit", explode)
    with pytest.raises(NonFiniteLossError, match="step 3"):
        train.main(["--rope", "true", "--moe", "true", "--fgram", "false", *CHAR, "--seed", "7"])
    runs = _runs(root)
    assert list(runs.status) == ["FAILED"]
    assert runs["tags.mlflow.runName"][0] == "rope+moe-fgram s7"  # the factors only, and the seed


def test_a_killed_training_run_is_not_left_running_in_mlflow(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys
    import time

    from _project import env_for

    root = _prepared_project(tmp_path, monkeypatch)
    _write_params(root, lambda p: p["train"].update(max_iters=100_000, eval_interval=50_000))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", "--rope", "false", "--moe", "false",
         "--fgram", "false", *CHAR, "--seed", "1"],
        cwd=root, env=env_for(root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 180
    # .checkpoints/<cell>.json names the MLflow run once it is open: then the cell trains
    while time.time() < deadline and not list(root.glob(".checkpoints/*.json")):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    assert len(_runs(root)) == 1 and _runs(root).status[0] == "RUNNING"
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    runs = _runs(root)
    assert len(runs) == 1 and runs.status[0] in ("FAILED", "KILLED")


def test_a_prompt_outside_the_corpus_is_rejected_before_training(tmp_path, monkeypatch):
    from pipeline.train import cli as train

    root = _prepared_project(tmp_path, monkeypatch)
    _write_params(root, lambda p: p["sample"].update(prompt="ROMEO€"))
    with pytest.raises(StageError, match="sample.prompt"):
        train.main(["--rope", "true", "--moe", "false", "--fgram", "false", *CHAR, "--seed", "1"])
    assert not (root / "experiments").exists() and not (root / "mlflow.db").exists()


def test_exponent_floats_in_params_yaml_are_floats_and_typos_stay_errors(tmp_path):
    from pipeline.params.reader import ParamsLoader

    for text, value in [("1e-3", 1e-3), ("1E-3", 1e-3), ("5e-4", 5e-4), ("-1e-5", -1e-5),
                        ("1.5e+2", 150.0), ("+2e3", 2000.0), (".5e1", 5.0)]:  # fmt: skip
        assert yaml.load(f"x: {text}", Loader=ParamsLoader) == {"x": value}, text
    for text in ("1e-3x", "e5", ".e5", "1e", "'1e-3'", "abc"):
        assert isinstance(yaml.load(f"x: {text}", Loader=ParamsLoader)["x"], str), text
    assert yaml.safe_load("x: 1e-3") == {"x": "1e-3"}  # PyYAML's own loader is left alone

    root = make_project(tmp_path)
    text = (root / "params.yaml").read_text(encoding="utf-8")
    text = text.replace("learning_rate: 0.001", "learning_rate: 1E-3")
    text = text.replace("min_lr: 0.0001", "min_lr: 5e-5")
    text = text.replace("z_loss_coef: 0.001", "z_loss_coef: 1e-3")
    (root / "params.yaml").write_text(text, encoding="utf-8")
    p = load_params(root / "params.yaml")
    assert (p.train.learning_rate, p.train.min_lr, p.model.z_loss_coef) == (1e-3, 5e-5, 1e-3)


@pytest.mark.parametrize("top_k", [0, None])
def test_sample_top_k_zero_or_null_turns_top_k_off(tmp_path, top_k):
    root = make_project(tmp_path)
    _write_params(root, lambda p: p["sample"].update(top_k=top_k))
    assert load_params(root / "params.yaml").sample.top_k is None


def test_run_stage_prints_an_os_error_naming_a_file_in_one_line_and_keeps_other_bugs(
    tmp_path, capsys, monkeypatch
):
    import errno
    import signal

    from pipeline.stage import run_stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # keep pytest's SIGTERM handling

    def disk_full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "data/out.bin"))

    with pytest.raises(SystemExit) as exit_info:
        run_stage(disk_full)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err == "error: data/out.bin: No space left on device; free disk space, then run it again\n"
    )

    def bug(argv):
        raise OSError("no file name: a bug, not the machine")

    with pytest.raises(OSError, match="a bug"):
        run_stage(bug)
