"""dvc.yaml as the map: stage items resolved from it name their outputs and runs as DVC does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from betamcmc.core.errors import InputError
from betamcmc.core.pipeline import load_stages, stage_item

from conftest import REPO

DVC_YAML = REPO / "dvc.yaml"


def every_item() -> list[Any]:
    """Every stage item of the shipped dvc.yaml and params.yaml (the matrices expanded)."""
    import itertools

    params = yaml.safe_load((REPO / "params.yaml").read_text())

    def lookup(ref: str) -> list[Any]:
        node: Any = params
        for part in ref.strip("${} ").split("."):
            node = node[part]
        return list(node)  # a mapping (the schedules) iterates over its keys, as in DVC

    items = []
    for name, spec in load_stages(DVC_YAML).items():
        if "foreach" in spec:  # a mapping of items: each names its identity fields
            for entry in _mapping(params, spec["foreach"]).values():
                items.append(stage_item(name, DVC_YAML, **entry))
            continue
        dims = {d: lookup(ref) for d, ref in spec.get("matrix", {}).items()}
        for values in itertools.product(*dims.values()):
            items.append(stage_item(name, DVC_YAML, **dict(zip(dims, values, strict=True))))
    return items


def _mapping(params: Any, ref: str) -> dict[str, Any]:
    node: Any = params
    for part in ref.strip("${} ").split("."):
        node = node[part]
    return dict(node)


def test_item_names_are_dvc_names() -> None:
    """``StageItem.name`` (the MLflow run name) is exactly the name DVC gives the item."""
    dvc = Path(sys.executable).parent / "dvc"
    proc = subprocess.run(
        [str(dvc), "stage", "list", "--name-only"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(i.name for i in every_item()) == sorted(proc.stdout.split())


def test_every_output_of_an_item_is_named_by_its_key() -> None:
    items = every_item()
    assert len(items) == 25  # the default pipeline (test_item_names_are_dvc_names: the same as DVC)
    for item in items:
        assert item.outputs, item.name
        if item.key is not None:
            for path in item.outputs:
                assert item.key in Path(path).name, (item.name, path)


def test_lookups() -> None:
    item = stage_item("dialog", DVC_YAML, schedule="cyclical", bow="bow")
    assert item.name == "dialog@cyclical-bow" and item.identity == {
        "schedule": "cyclical",
        "bow": "bow",
    }
    assert item.out == Path("models/dialog/cyclical-bow")
    assert item.path(".json") == Path("metrics/dialog/cyclical-bow.json")
    assert "pretrain.schedules.cyclical" in item.params
    assert item.item_params == {"pretrain.schedules.cyclical": "schedule"}
    sg = stage_item("sgmcmc", DVC_YAML, protocol="downpour", workers=2)
    assert sg.name == "sgmcmc@downpour-2" and sg.path("_bma_accuracy.csv").name.startswith(
        "downpour-2"
    )
    with pytest.raises(InputError, match="no stage 'nope'"):
        stage_item("nope", DVC_YAML)
    with pytest.raises(InputError, match="identified by"):
        stage_item("sgmcmc", DVC_YAML, protocol="single")
    with pytest.raises(InputError, match="expected 1"):
        sg.path(".csv")  # two plot files end so


def test_no_dvc_yaml_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no dvc.yaml here"):
        stage_item("prepare", tmp_path / "dvc.yaml")
