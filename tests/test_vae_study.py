"""Studies as DVC experiments: the study files expand to the right `dvc exp run` commands, collect
keeps each experiment's own schedules, and both drawings are written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from betamcmc.core.errors import InputError
from betamcmc.results import vae_study, vae_study_render

REPO = Path(__file__).resolve().parents[1]


def test_shipped_study_files_expand_to_their_experiments():
    sweep = vae_study.load_spec(REPO / "studies/pretrain_sweep.yaml")
    cmds = vae_study.queue_commands(sweep)
    assert len(cmds) == 4 * 3 + 3  # cycles x budgets, and constant beta at each budget
    assert cmds[0] == ["dvc", "exp", "run", "--queue", "-n", "sweep-cycl1-iter1000",
                       "-S", "pretrain.schedules.cyclical.cycles=1",
                       "-S", "pretrain.train.iterations=1000", "pretrain@cyclical"]  # fmt: skip
    assert cmds[-1][-1] == "pretrain@constant" and cmds[-1][5] == "sweep-constant-iter4000"
    levers = vae_study.experiments(vae_study.load_spec(REPO / "studies/pretrain_levers.yaml"))
    assert levers[0] == {"key": "default", "set": {}, "name": "levers-default",
                         "targets": ["pretrain@constant", "pretrain@cyclical"]}  # fmt: skip
    assert {"levers-dropout-0.5", "levers-sharpness-0"} <= {e["name"] for e in levers}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]\n", "mapping with a non-empty 'name'"),
        ("name: x\n", "either 'grid' or"),
        ("name: x\ngrid: {a: [1]}\nexperiments: {b: {}}\n", "either 'grid' or"),
    ],  # fmt: skip
)
def test_bad_study_files_are_one_line(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        vae_study.load_spec(path)


def _metrics(kl: float) -> dict:
    return {"kind": "cyclical", "iterations": 40, "seeds": [0, 1],
            "test": {"kl": kl, "kl_std": 0.1, "mi": kl, "mi_std": 0.1, "au": 2.0, "au_std": 0.0,
                     "nll": 30.0, "nll_std": 0.2, "ppl": 5.0}}  # fmt: skip


def test_collect_keeps_each_experiments_targeted_schedules(monkeypatch):
    spec = {"name": "s", "targets": ["pretrain@cyclical"],
            "grid": {"pretrain.schedules.cyclical.cycles": [1, 4]}}  # fmt: skip
    shown = [{"rev": "abc", "experiments": [
        {"revs": [{"rev": "r1", "name": "s-cycl1", "data": {"metrics": {}}}]},
    ]}]  # fmt: skip
    committed = {"metrics/pretrain/cyclical.json": _metrics(0.5),  # the files of revision r1
                 "metrics/pretrain/constant.json": _metrics(9.9)}  # fmt: skip
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 0, json.dumps(shown), ""))  # fmt: skip
    import dvc.api

    def read(path: str, repo: str, rev: str) -> str:
        if path.endswith(".json"):
            return json.dumps(committed[path])
        return "iteration,kl,mi,au\n20,0.5,0.4,2\n"

    monkeypatch.setattr(dvc.api, "read", read)
    out = vae_study.collect(spec)
    assert out["missing"] == ["s-cycl4"]
    # metrics written under other settings (the baseline's, carried by an experiment that did
    # not rerun the stage) are not collected
    from betamcmc.params import load_params

    raw = load_params(REPO / "params.yaml").model_dump()
    shown[0]["experiments"][0]["revs"][0]["data"]["params"] = {"params.yaml": {"data": raw}}
    committed["metrics/pretrain/cyclical.json"] = _metrics(0.5) | {"params_hash": "000000000000"}
    assert vae_study.collect(spec)["missing"] == ["s-cycl1:cyclical", "s-cycl4"]
    from betamcmc.core.pipeline import stage_item

    keys = stage_item("pretrain", REPO / "dvc.yaml", schedule="cyclical").params
    own = load_params(REPO / "params.yaml").digest(keys)
    committed["metrics/pretrain/cyclical.json"] = _metrics(0.5) | {"params_hash": own}
    assert vae_study.collect(spec)["missing"] == ["s-cycl4"]  # its own settings: collected
    (row,) = out["experiments"]
    assert (
        row["name"] == "s-cycl1" and row["rev"] == "r1" and list(row["schedules"]) == ["cyclical"]
    )
    assert row["schedules"]["cyclical"]["test"]["kl"] == 0.5
    assert row["schedules"]["cyclical"]["curve"] == {
        "iteration": [20.0],
        "kl": [0.5],
        "mi": [0.4],
        "au": [2.0],
    }


def test_collect_names_an_experiment_whose_params_it_cannot_read(monkeypatch):
    """An experiment of the whole ``pretrain`` group run by an older version (its params.yaml
    fails today's schema) is listed as missing with the reason, not silently dropped."""
    spec = {"name": "s", "targets": ["pretrain"], "experiments": {"old": {"seed": 1}}}
    old = {"params.yaml": {"data": {"seed": 1, "no_such_section": {}}}}
    shown = [{"rev": "abc", "experiments": [
        {"revs": [{"rev": "r1", "name": "s-old", "data": {"metrics": {}, "params": old}}]},
    ]}]  # fmt: skip
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 0, json.dumps(shown), ""))  # fmt: skip
    out = vae_study.collect(spec)
    assert out["experiments"] == []
    (line,) = out["missing"]
    assert line.startswith("s-old (its params.yaml does not validate"), line


def test_render_grid_and_list_studies(tmp_path):
    curve = {"iteration": [20.0, 40.0], "kl": [0.1, 0.5], "mi": [0.1, 0.4], "au": [0.0, 2.0]}
    grid = {"name": "g", "missing": [], "spec": {"grid": {"pretrain.schedules.cyclical.cycles": [1, 4],
                                                          "pretrain.train.iterations": [20, 40]}},
            "experiments": [{"name": f"g-{m}-{t}", "rev": "r", "schedules": {"cyclical": {"test": _metrics(m / 10)["test"], "curve": curve}},
                             "set": {"pretrain.schedules.cyclical.cycles": m, "pretrain.train.iterations": t}}
                            for m in (1, 4) for t in (20, 40)]}  # fmt: skip
    assert vae_study_render.render(grid, tmp_path) == {"g_points": 4.0}
    text = (tmp_path / "study_g.md").read_text()
    assert (
        "| g-4-40 | `pretrain.schedules.cyclical.cycles=4`, `pretrain.train.iterations=40` | cyclical | 0.40 ± 0.10 |"
        in text
    )
    assert "`betamcmc study queue studies/g.yaml`" in text  # no file recorded: the name's
    listed = {**grid, "name": "l", "spec": {"experiments": {}}, "file": "studies/my_l.yaml"}
    assert vae_study_render.render(listed, tmp_path) == {"l_experiments": 4.0}
    assert "`betamcmc study collect studies/my_l.yaml`" in (tmp_path / "study_l.md").read_text()
    assert (tmp_path / "study_g.png").stat().st_size > 10_000 and (
        tmp_path / "study_l.png"
    ).exists()


def test_collect_keep_takes_earlier_rows_of_experiments_this_repo_lacks(tmp_path):
    spec = {"name": "s", "targets": ["pretrain"], "experiments": {"a": {}, "b": {"seed": 1},
                                                                  "c": {"seed": 2}}}  # fmt: skip

    def row(name: str, rev: str) -> dict:
        return {"name": name, "rev": rev, "set": {}, "schedules": {}}

    earlier = {"name": "s", "experiments": [row("s-a", "old-a"), row("s-b", "old-b"),
                                            row("s-gone", "old-x")], "missing": []}  # fmt: skip
    now = {"name": "s", "spec": spec, "experiments": [row("s-b", "new-b")],
           "missing": ["s-a", "s-c:cyclical"]}  # fmt: skip
    out = vae_study.keep_earlier(now, earlier)
    # a row found now wins; an earlier row fills a missing experiment; rows of experiments no
    # longer in the study file are dropped; the study file's order holds
    assert [(r["name"], r["rev"]) for r in out["experiments"]] == [("s-a", "old-a"),
                                                                    ("s-b", "new-b")]  # fmt: skip
    assert out["missing"] == ["s-c:cyclical"] and out["kept"] == ["s-a"]
    with pytest.raises(InputError, match="earlier collection is of study 'x'"):
        vae_study.keep_earlier(now, {**earlier, "name": "x"})
    bad = tmp_path / "s.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        vae_study.read_collection(bad)
    bad.write_text("[]")
    with pytest.raises(InputError, match="not a collected study"):
        vae_study.read_collection(bad)


def test_cli_collect_keep_merges_into_the_output_file(tmp_path, monkeypatch, capsys):
    from betamcmc import cli

    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("name: s\ntargets: [pretrain]\nexperiments: {a: {}, b: {seed: 1}}\n")
    spec = vae_study.load_spec(spec_file)
    row = {"name": "s-b", "rev": "new", "set": {"seed": 1}, "schedules": {}}
    monkeypatch.setattr(vae_study, "collect", lambda s: {"name": "s", "spec": spec,
                                                     "experiments": [row], "missing": ["s-a"]})  # fmt: skip
    out = tmp_path / "s.json"
    out.write_text(json.dumps({"name": "s", "experiments": [{**row, "name": "s-a", "rev": "old"}]}))
    assert cli.main(["study", "collect", str(spec_file), "--out", str(out), "--keep"]) == 0
    got = json.loads(out.read_text())
    assert [r["rev"] for r in got["experiments"]] == ["old", "new"] and got["missing"] == []
    assert "2 experiment(s) (1 kept from before)" in capsys.readouterr().out
    assert cli.main(["study", "collect", str(spec_file), "--out", str(out)]) == 0  # no --keep
    assert json.loads(out.read_text())["missing"] == ["s-a"]
    out.write_text("{")
    assert cli.main(["study", "collect", str(spec_file), "--out", str(out), "--keep"]) == 2
    assert "not JSON" in capsys.readouterr().err
