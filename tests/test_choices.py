"""The demo's choices sweep (`helpers.course.choices`): one setting changed at a time, scored on
validation only, read back in sentences that state the table's numbers; its command's one-line
errors; the stored table in the schema the reader expects."""

from __future__ import annotations

import re
import zlib
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers.course import choices
from helpers.course.profiles import Profile, get_profile


def _manifest() -> pd.DataFrame:
    """Two classes in train, val and test; one crack image per split has an empty label."""
    rows = []
    for split in ("train", "val", "test"):
        for dataset in ("cracks", "taping"):
            for i in range(3):
                empty = dataset == "cracks" and i == 0
                rows.append({"image_path": f"{split}/{dataset}{i}.jpg",
                             "mask_path": f"{split}/{dataset}{i}.png", "split": split,
                             "dataset": dataset, "group_id": f"{split}-{dataset}-{i}",
                             "mask_fraction": 0.0 if empty else 0.05})
    return pd.DataFrame(rows)


def _differences(profile: Profile, base: Profile) -> set[str]:
    return {f.name for f in fields(Profile) if getattr(profile, f.name) != getattr(base, f.name)}


def test_each_run_changes_at_most_one_setting() -> None:
    base = get_profile("demo")
    runs = choices.variants(base)
    assert len(runs) == 5 and len({r.name for r in runs}) == 5
    assert "lora" not in {r.name for r in runs}  # the notebooks' run is never touched
    for run in runs:
        expected = set() if run.setting == "defaults" else {run.setting}
        assert _differences(run.profile, base) == expected, run


@pytest.fixture
def patched(monkeypatch, tmp_path):
    """`trained_model` and `evaluate_model` replaced by fakes that record their calls and
    return sweep tables whose scores depend on the run."""
    import helpers.course.runs as runs
    import helpers.evaluate.predictions as predictions
    from helpers.evaluate.sweep import THRESHOLDS, counts_table

    calls = SimpleNamespace(trained=[], evaluated=[])

    def fake_trained_model(profile, mode, manifest, run, progress=True, name=None, **kw):
        calls.trained.append(SimpleNamespace(profile=profile, mode=mode, run=run, name=name,
                                             splits=set(manifest["split"])))
        return SimpleNamespace(segmenter=lambda: None, evaluation_key=name,
                               info={"best_epoch": 1})

    def fake_evaluate_model(segmenter, manifest, store, key, splits=("val", "test"),
                            prompts=None, batch_size=8, progress=True):
        from helpers.data.prompts import PROMPTS

        prompts = prompts or PROMPTS
        calls.evaluated.append(SimpleNamespace(key=key, splits=tuple(splits), store=store,
                                               manifest_splits=set(manifest["split"])))
        quality = (zlib.crc32(key.encode()) % 100) / 100  # differs between runs
        keys, counts = [], []
        for row in manifest[manifest["split"].isin(splits)].itertuples():
            size = 0 if row.mask_fraction == 0 else 100
            for prompt in prompts[row.dataset]:
                keys.append((Path(row.image_path).stem, row.dataset, prompt, row.split))
                tp = np.round(size * (1 - THRESHOLDS) * (0.5 + quality / 2))
                fp = np.round(40 * (1 - THRESHOLDS) ** 2 * (1 - quality))
                counts.append(np.stack([tp, fp, size - tp], axis=-1))
        return counts_table(keys, np.array(counts)), None

    monkeypatch.setattr(choices, "profile_dir", lambda run: tmp_path / run)  # not outputs/
    monkeypatch.setattr(runs, "trained_model", fake_trained_model)
    monkeypatch.setattr(predictions, "evaluate_model", fake_evaluate_model)
    return calls


def test_the_sweep_trains_one_change_at_a_time_and_scores_validation_only(patched) -> None:
    base = get_profile("demo")
    table = choices.sweep_choices(base, _manifest(), epochs=2, run="test-choices", progress=False)
    assert list(table.columns) == list(choices.COLUMNS)
    assert len(table) == 7 and table["run"].nunique() == 5
    # the three rows at the profile's own values are one run
    assert set(table.loc[table["default"], "run"]) == {choices.DEFAULTS_RUN}
    assert set(table["epochs"]) == {2} and set(table["seed"]) == {base.seed}
    # each run: the profile at 2 epochs with at most one setting changed, under its own name
    at_length = get_profile("demo", epochs=2)
    assert len(patched.trained) == 5
    for call in patched.trained:
        assert call.mode == "lora" and call.run == "test-choices"
        assert len(_differences(call.profile, at_length)) <= 1
        assert "test" not in call.splits
    # evaluation: validation only, own prompts and the other class's prompts per run
    assert len(patched.evaluated) == 10
    for call in patched.evaluated:
        assert call.splits == ("val",) and "test" not in call.manifest_splits
    assert np.allclose(table["val_miou"], (table["val_iou_cracks"] + table["val_iou_taping"]) / 2,
                       atol=1e-4)
    assert table[["false_alarms_empty", "false_alarms_wrong_prompt"]].notna().all().all()


def _table() -> pd.DataFrame:
    rows = [
        ("bce_weight", 1.0, False, 0.40, 0.50, 0.45, 0.6, 0.30),
        ("bce_weight", 3.0, True, 0.42, 0.54, 0.48, 0.2, 0.10),
        ("negative_rate", 0.25, False, 0.41, 0.51, 0.46, 0.4, 0.50),
        ("negative_rate", 1.0, True, 0.42, 0.54, 0.48, 0.2, 0.10),
        ("lr", 0.001, False, 0.30, 0.40, 0.35, 0.8, 0.60),
        ("lr", 0.005, True, 0.42, 0.54, 0.48, 0.2, 0.10),
        ("lr", 0.02, False, 0.46, 0.56, 0.51, 0.2, 0.20),
    ]
    table = pd.DataFrame(rows, columns=list(choices.COLUMNS[:8]))
    return table.assign(best_epoch=[4, 1, 3, 1, 2, 1, 4], epochs=4, seed=42,
                        run=["r1", "d", "r2", "d", "r3", "d", "r4"])


def test_the_reading_states_the_tables_numbers_and_where_the_default_loses() -> None:
    settings = {"empty_label_pairs": 10, "wrong_prompt_pairs": 200, "profile_epochs": 8,
                "val_images": 42, "val_photos": 14, "empty_label_images": 2}
    text = choices.choices_reading(_table(), settings)
    lines = text.splitlines()
    assert lines[0].startswith("Criterion: val mIoU")
    assert "bce_weight 3 (the default) scores val mIoU 0.480" in text
    assert "0.450 at 1 (false alarms 6 of 10 empty-label pairs, 60 of 200 wrong-prompt" in text
    assert "0.460 at 0.25" in text and "0.350 at 0.001" in text and "0.510 at 0.02" in text
    lr = next(line for line in lines if line.startswith("lr "))
    assert ("not the best: lr 0.02 scores 0.030 more val mIoU; under the other class's prompts "
            "the default marks something on fewer pairs (20 of 200 against 40 of 200)") in lr
    bce = next(line for line in lines if line.startswith("bce_weight "))
    assert "the highest val mIoU of these values, more than 0.01 above every other value" in bce
    near = _table()
    near.loc[2, "val_miou"] = 0.475  # negative_rate 0.25 just below the default
    line = next(line for line in choices.choices_reading(near, settings).splitlines()
                if line.startswith("negative_rate "))
    assert ("the highest val mIoU of these values, level with negative_rate 0.25 by the same "
            "rule (0.005 below; gaps up to 0.01 are read as level)") in line
    assert "one seed (42) and 4 epochs (the profile trains 8)" in lines[-1]
    level = _table()
    level.loc[0, ["val_miou", "false_alarms_wrong_prompt"]] = [0.485, 0.30]  # bce_weight 1
    bce = next(line for line in choices.choices_reading(level, settings).splitlines()
               if line.startswith("bce_weight "))
    assert "not the best" not in bce
    assert ("the default and bce_weight 1 are level (0.005 apart; gaps up to 0.01 are read as "
            "level); under the other class's prompts the default marks something on fewer pairs "
            "(20 of 200 against 60 of 200)") in bce
    same_length = choices.choices_reading(_table(), {**settings, "profile_epochs": 4})
    assert "one seed (42) and 4 epochs (the profile's) on" in same_length
    assert "42 validation images (14 photos; 2 images with an empty label)" in lines[-1]
    assert "from 20 of 200 to 120 of 200 wrong-prompt pairs" in text
    assert ("for bce_weight 1, the defaults, negative_rate 0.25, lr 0.001, lr 0.02: 4, 1, 3, 2, 4 "
            "of 4") in text
    assert "the defaults kept its first epoch: no later one of the 4 scored a higher" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--profile", "nope"], "--profile 'nope' (not a profile) is not supported"),
        (["--profile", "full"], "--profile 'full' (a known profile) is not supported"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--epochs", "four"], "argument --epochs: invalid int value: 'four'"),
        (["--out", "{tmp}/table.txt"], "--out must name a .csv file, got 'table.txt'"),
        (["--out", "{tmp}"], "is a folder; name a .csv file"),
        (["--out", "{tmp}/afile/table.csv"], "cannot create the folder of --out"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_misuse_is_one_line_and_exit_code_2(argv, message, tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setattr(choices, "_run", lambda *a, **k: pytest.fail("the sweep started"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = choices.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert err[0].startswith("python -m helpers.choices: error: ")


def test_the_command_writes_the_table_and_its_settings(tmp_path, monkeypatch) -> None:
    import helpers.course.session as session

    course = SimpleNamespace(cfg=get_profile("demo"), manifest=_manifest())
    monkeypatch.setattr(session, "open_course", lambda **kw: course)
    monkeypatch.setattr(choices, "sweep_choices", lambda cfg, manifest, epochs: _table())
    out = tmp_path / "sub" / "choices.csv"
    assert choices.main(["--epochs", "3", "--out", str(out)]) == 0
    table = choices.read_choices(out)
    assert table.equals(_table())
    settings = table.attrs["settings"]
    assert settings["profile"] == "demo" and settings["epochs"] == 3 and settings["seed"] == 42
    assert settings["command"].startswith("python -m helpers.choices --profile demo --epochs 3")
    assert choices.main(["--out", str(out)]) == 0  # by default the profile's epochs
    settings = choices.read_choices(out).attrs["settings"]
    assert settings["epochs"] == get_profile("demo").epochs == settings["profile_epochs"]
    assert settings["command"].startswith("python -m helpers.choices --profile demo --out")
    assert str(tmp_path) not in out.with_suffix(".json").read_text()  # no machine path
    assert sorted(p.name for p in out.parent.iterdir()) == ["choices.csv", "choices.json"]



def test_the_stored_table_is_what_the_reader_expects() -> None:
    path = choices.choices_path("demo")
    table = choices.read_choices(path)
    settings = table.attrs["settings"]
    assert list(table.columns) == list(choices.COLUMNS)
    assert settings["profile"] == "demo" and settings["split"] == "val"
    assert settings["command"].startswith("python -m helpers.choices --profile demo")
    demo = get_profile("demo")
    assert set(table["setting"]) == set(choices.GRID)
    for setting, rows in table.groupby("setting"):
        default = rows[rows["default"]]
        assert len(default) == 1 and default["value"].iloc[0] == getattr(demo, setting)
    assert table.loc[table["default"], "run"].nunique() == 1 and table["run"].nunique() == 5
    assert set(table["epochs"]) == {settings["epochs"]} and set(table["seed"]) == {demo.seed}
    assert not any("test" in c for c in table.columns)  # choices are made on validation
    for text in (path.read_text(), path.with_suffix(".json").read_text()):
        assert not re.search(r"(^|[\s\"',=])/", text)  # no absolute path
    reading = choices.choices_reading(table)
    for value in table["val_miou"]:
        assert f"{value:.3f}" in reading


def _val_table(cracks: float, taping: float) -> pd.DataFrame:
    """Two validation images per class; each scores its class's IoU at threshold 0.5 (less at
    0.3 and 0.7), so the validation choice is 0.5 and the class's IoU is the one given."""
    rows = [{"image_id": f"{cls}{i}", "dataset": cls, "prompt": "p", "split": split,
             "threshold": t, "iou": peak if t == 0.5 else peak / 2}
            for cls, peak in (("cracks", cracks), ("taping", taping))
            for i in range(2) for t in (0.3, 0.5, 0.7) for split in ("val", "test")]
    return pd.DataFrame(rows)


def test_the_notebook_says_whether_the_stored_defaults_row_is_its_own_run() -> None:
    table = _table()
    table.loc[table["default"], ["val_iou_cracks", "val_iou_taping"]] = [0.42, 0.54]
    table.attrs["settings"] = {"profile": "demo"}
    same = choices.defaults_check(table, _val_table(0.42, 0.54), 1, "demo", 4, 42)
    assert same.startswith("The choices table's defaults row is this run: best epoch 1, "
                           "validation IoU cracks 0.4200 and taping 0.5400 in both (the table's "
                           "protocol: thresholds chosen on validation")
    stale = choices.defaults_check(table, _val_table(0.40, 0.54), 3, "demo", 4, 42)
    assert stale.startswith("The choices table's defaults row is not this run (table: best "
                            "epoch 1, validation IoU cracks 0.4200, taping 0.5400; this run: "
                            "best epoch 3, cracks 0.4000, taping 0.5400)")
    other = choices.defaults_check(table, _val_table(0.42, 0.54), 1, "full", 20, 42)
    assert other.startswith("The choices table holds the demo profile's runs (4 epochs, seed 42)")
