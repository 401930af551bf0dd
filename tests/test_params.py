"""params.yaml validation: every kind of mistake gives one line with file:line, key and value."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from betamcmc.core.errors import ParamsError
from betamcmc.core.paramfile import WORKER_COUNTS, require_item
from betamcmc.core.runner import run_stage
from betamcmc.params import load_params

from conftest import REPO, tiny_params, write_params

SHIPPED = (REPO / "params.yaml").read_text()


def _error_for(tmp_path: Path, text: str) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def _shipped_with(old: str, new: str) -> tuple[str, int]:
    """The shipped params.yaml with one line replaced; returns the text and that line's number."""
    lines = SHIPPED.splitlines()
    hits = [i for i, line in enumerate(lines) if line.split("#")[0].rstrip() == old]
    assert len(hits) == 1, f"{old!r} is not one line of params.yaml"
    lines[hits[0]] = new
    return "\n".join(lines) + "\n", hits[0] + 1


def test_shipped_params_validate() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.data.corpus == "synthetic"
    assert params.data.path is None  # the default pipeline never needs ../shared


def test_tiny_params_validate(tmp_path: Path) -> None:
    load_params(write_params(tmp_path / "params.yaml", tiny_params()))


def test_out_of_range_names_key_line_and_value(tmp_path: Path) -> None:
    text, line = _shipped_with("  max_len: 30", "  max_len: 1")
    msg = _error_for(tmp_path, text)
    assert msg.endswith(f"params.yaml:{line}: data.max_len: must be >= 2 (got 1)")


def test_unknown_key_names_the_key_written_and_suggests_the_missing_one(tmp_path: Path) -> None:
    text, line = _shipped_with("  max_len: 30", "  max_lenn: 30")
    msg = _error_for(tmp_path, text)
    assert msg.endswith(
        f"params.yaml:{line}: data.max_lenn: unknown key (got 30); did you mean max_len?"
    )


def test_unknown_section(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, SHIPPED + "training:\n  lr: 1\n")
    assert msg.endswith(f"params.yaml:{len(SHIPPED.splitlines()) + 1}: training: unknown key")


def test_missing_key_is_named_at_its_section(tmp_path: Path) -> None:
    text, _ = _shipped_with("    lr: 0.005", "")
    msg = _error_for(tmp_path, text)
    train_line = next(
        i for i, ln in enumerate(SHIPPED.splitlines(), 1) if ln.startswith("  train:")
    )
    assert msg.endswith(f"params.yaml:{train_line}: pretrain.train.lr: missing required key")


def test_empty_file_is_an_error_not_silent_defaults(tmp_path: Path) -> None:
    assert _error_for(tmp_path, "").endswith("params.yaml: params file is empty (expected the "
                                             "sections seed, device, data, tracking, runtime, pretrain, "
                                             "finetune, sgmcmc, rl)")  # fmt: skip


def test_wrong_type_is_not_coerced(tmp_path: Path) -> None:
    text, line = _shipped_with("seed: 0", "seed: '3'")
    msg = _error_for(tmp_path, text)
    assert msg.endswith(f"params.yaml:{line}: seed: must be an integer (got '3')")


def test_bad_choice(tmp_path: Path) -> None:
    text, line = _shipped_with("device: auto", "device: gpu")
    msg = _error_for(tmp_path, text)
    assert f"params.yaml:{line}: device: must be one of 'auto', 'cpu' or 'cuda' (got 'gpu')" in msg


def test_cross_field_rule(tmp_path: Path) -> None:
    text, _ = _shipped_with("    valid: 0.1", "    valid: 0.95")
    msg = _error_for(tmp_path, text)
    assert "data.split: valid + test must be < 1" in msg


def test_finetune_schedules_must_be_pretrain_schedules(tmp_path: Path) -> None:
    """A cross-section rule: the downstream stages run only schedules that pretrain trains."""
    old = "  schedules: [constant, monotonic, cyclical]"
    text, line = _shipped_with(old, "  schedules: [constant, warmup]")
    msg = _error_for(tmp_path, text)
    assert f"params.yaml:{line}: finetune.schedules.1: must be a key of pretrain.schedules" in msg
    assert "'constant', 'monotonic', 'cyclical'" in msg and msg.endswith("(got 'warmup')")
    text, _ = _shipped_with(old, "  schedules: [constant, constant]")
    assert "schedules must be distinct" in _error_for(tmp_path, text)
    text, _ = _shipped_with(old, "  schedules: [cyclical]")  # a subset is fine
    load_params(write_params(tmp_path / "ok.yaml", yaml.safe_load(text)))


def test_real_corpus_needs_path(tmp_path: Path) -> None:
    text, _ = _shipped_with("  corpus: synthetic", "  corpus: ptb")
    msg = _error_for(tmp_path, text)
    assert "data: path is required when corpus is 'ptb'" in msg


def test_invalid_yaml(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, "seed: [1,\n")
    assert "invalid YAML" in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_flat_and_digest() -> None:
    params = load_params(REPO / "params.yaml")
    flat = params.flat(["seed", "data"])
    assert flat["data.synthetic.train"] == params.data.synthetic.train
    assert "tracking.experiment" not in flat
    assert params.digest(["seed"]) != params.digest(["data"])


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [(None, 0, "ok"), ("  min_count: 0", 2, "data.min_count: must be >= 1 (got 0)")],
)
def test_cli_params_check(tmp_path: Path, content: str | None, code: int, needle: str) -> None:
    path = REPO / "params.yaml"
    if content is not None:
        path = tmp_path / "p.yaml"
        path.write_text(_shipped_with("  min_count: 1", content)[0])
    proc = subprocess.run(
        [sys.executable, "-m", "betamcmc.cli", "params", "check", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stdout + proc.stderr
    if code:
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "Traceback" not in proc.stderr


def _sections(model: type, path: str = "") -> list[tuple[str, type]]:
    """Every Section class reachable from ``model`` through fields typed as one section (not the
    user-named entries of a mapping such as ``pretrain.schedules``), with its key path."""
    from betamcmc.core.schema import Section

    out = [(path or "<root>", model)]
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            out += _sections(kind, f"{path}.{name}" if path else name)
    return out


def test_one_place_for_numbers_no_schema_defaults() -> None:
    """Every fixed key is required: its value lives only in params.yaml (issue 12, item 3)."""
    from betamcmc.params import Params

    with_default = [
        f"{where}.{name}"
        for where, model in _sections(Params)
        for name, field in model.model_fields.items()
        if not field.is_required()
    ]
    assert with_default == []
    assert len(_sections(Params)) > 15  # the walk reached the nested sections


def test_one_place_for_numbers_no_library_config_defaults() -> None:
    """The configs the stages fill from params (model sizes, engine and loss settings) have no
    defaults that could repeat or contradict params.yaml; only the vocabulary's special ids."""
    import dataclasses

    from betamcmc.finetune.cvae import CVAEConfig
    from betamcmc.rl.agent import LossConfig
    from betamcmc.sgmcmc.engine.config import EngineConfig, SamplerConfig
    from betamcmc.vae.model import VAEConfig

    with_default = [
        f"{cls.__name__}.{f.name}"
        for cls in (VAEConfig, CVAEConfig, EngineConfig, SamplerConfig, LossConfig)
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    special_ids = [f"VAEConfig.{k}_id" for k in ("pad", "unk", "bos", "eos")]
    assert with_default == special_ids


def test_schedule_defaults_are_the_shipped_entries_where_both_exist() -> None:
    """A schedule's optional knobs default to the values the shipped entries use, so an entry
    written with fewer keys means the same schedule (the entry named after its kind; a named
    variant such as cyclical-restart differs on purpose)."""
    shipped = load_params(REPO / "params.yaml").pretrain.schedules
    for name, schedule in shipped.items():
        if name != schedule.kind:
            continue
        bare = type(schedule)(kind=schedule.kind)
        written = yaml.safe_load(SHIPPED)["pretrain"]["schedules"][name]
        for key in written:
            assert getattr(bare, key) == getattr(schedule, key), f"{name}.{key}"


# --------------------------------------------------------------------------- stage arguments
def test_require_item_one_line_naming_key_and_file() -> None:
    require_item("p.yaml", "sgmcmc.workers", 3, WORKER_COUNTS)
    require_item("p.yaml", "pretrain.schedules", "a", {"a": 1})
    with pytest.raises(ParamsError) as err:
        require_item("p.yaml", "pretrain.schedules", "c", {"a": 1, "b": 2})
    assert str(err.value) == "p.yaml: pretrain.schedules: must be one of 'a' or 'b' (got 'c')"
    assert err.value.exit_code == 2
    with pytest.raises(ParamsError, match=r"^p.yaml: rl.workers: must be >= 1 \(got 0\)$"):
        require_item("p.yaml", "rl.workers", 0, WORKER_COUNTS)


SCHEDULE_ERROR = (
    "pretrain.schedules: must be one of 'constant', 'monotonic', 'cyclical' or 'cyclical-restart'"
)
FINETUNE_ERROR = "finetune.schedules: must be one of 'constant', 'monotonic' or 'cyclical'"


@pytest.mark.parametrize(
    ("stage", "args", "expected"),
    [
        ("pretrain", ["warmup"], f"{SCHEDULE_ERROR} (got 'warmup')"),
        ("classify", ["warmup"], f"{FINETUNE_ERROR} (got 'warmup')"),
        ("sgmcmc_vae_head", ["warmup"], f"{FINETUNE_ERROR} (got 'warmup')"),
        ("dialog", ["warmup", "--bow", "bow"], f"{FINETUNE_ERROR} (got 'warmup')"),
        (
            "dialog",
            ["cyclical", "--bow", "yes"],
            "finetune.dialog.bow: must be one of 'nobow' or 'bow' (got 'yes')",
        ),
        (
            "sgmcmc",
            ["gossip", "2"],
            "sgmcmc.protocols: must be one of 'single', 'sync', 'downpour' or 'elastic' "
            "(got 'gossip')",
        ),
        ("sgmcmc", ["downpour", "0"], "sgmcmc.workers: must be >= 1 (got 0)"),
        (
            "rl",
            ["sgd-gossip", "2"],
            "rl.methods: must be one of 'sgd-downpour', …(got 'sgd-gossip')",
        ),
        ("rl", ["sgld-elastic", "0"], "rl.workers: must be >= 1 (got 0)"),
    ],
)
def test_stage_argument_naming_no_item_one_line_exit_2(
    stage: str,
    args: list[str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every stage checks its item arguments with the one ``require_item``: one line naming
    the params key and file, exit 2, before anything is written."""
    spec = importlib.util.spec_from_file_location(f"stage_{stage}", REPO / "stages" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", tiny_params())
    with pytest.raises(SystemExit) as done:
        run_stage(lambda: module.main(args))
    err = capsys.readouterr().err
    head, _, tail = f"error: params.yaml: {expected}".partition("…")
    assert done.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(head) and err.rstrip().endswith(tail), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_stages_params_cross_into_a_fresh_process(tmp_path: Path) -> None:
    """A stage's params model is made at run time (root + its sections); the pretrain seeds'
    worker processes get the params pickled, in a process that never made that model."""
    from betamcmc.core.paramfile import load_stage_params
    from betamcmc.vae.params import PretrainParams

    path = tmp_path / "params.yaml"
    write_params(path, tiny_params())
    params = load_stage_params(path, pretrain=PretrainParams)
    assert not hasattr(params, "rl")  # only the sections the stage reads
    blob = tmp_path / "params.pkl"
    blob.write_bytes(pickle.dumps(params))
    code = (
        "import pickle, sys; p = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(p.digest(), p.pretrain.train.iterations, type(p).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(blob)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    digest, iterations, name = out.stdout.split()
    assert (digest, int(iterations), name) == (
        params.digest(),
        params.pretrain.train.iterations,
        "StageParams",
    )
