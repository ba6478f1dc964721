"""`python -m helpers.train`: complete help, one-line errors with exit code 2."""

from __future__ import annotations

import pytest

from helpers.train.__main__ import main, parser


def test_help_names_every_option() -> None:
    text = " ".join(parser().format_help().split())
    for option in ("--profile", "--mode", "--epochs", "--batch-size", "--device", "--precision",
                   "--run-name", "--retrain", "--no-resume", "global batch", "torchrun"):
        assert option in text, option


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--batch-size", "-2"], "--batch-size must be >= 1, got -2"),
        (["--profile", "nope"], "invalid choice: 'nope'"),
        (["--mode", "adapter"], "invalid choice: 'adapter'"),
    ],
)
def test_misuse_is_one_line_and_exit_code_2(argv, message, capsys) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_an_absent_device_is_one_line(monkeypatch, capsys) -> None:
    import helpers.core.runtime as runtime

    monkeypatch.setattr(runtime, "available_devices", lambda: ["cpu"])
    assert main(["--device", "cuda", "--run-name", "cli-absent-device"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda" in err[0]
