"""What a newcomer reads in `--help`: one spelling per flag across subcommands, the program names as typed, and the
pico recipe's trap (a smoke run mistaken for a finished full run) closed."""

import json

import pytest

from cosmos3.cli import main
from cosmos3.train.__main__ import pico_main

SUBCOMMANDS = [["generate"], ["train"], ["train", "--recipe", "pico"], ["world", "generate"], ["demo"], ["reason"],
               ["serve"]]


def help_text(argv, capsys) -> str:
    try:
        code = main([*argv, "--help"])
    except SystemExit as stop:
        code = stop.code
    assert code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_progress_flag_has_one_spelling(argv, capsys):
    text = help_text(argv, capsys)
    assert "--no-progress" not in text
    if argv[0] in ("generate", "train", "world", "demo"):  # the commands with a progress bar
        assert "--quiet" in text


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_help_names_the_command_as_typed(argv, capsys):
    text = help_text(argv, capsys)
    assert "python -m" not in text
    assert text.split()[1] == "cosmos3", text.splitlines()[0]


def test_train_help_lists_the_pico_recipe_and_smoke(capsys):
    text = help_text(["train"], capsys)
    assert "--recipe pico" in text and "--smoke" in text


def test_full_pico_run_refuses_a_folder_holding_a_smoke_run(tmp_path, capsys):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "run_kind.json").write_text(json.dumps({"kind": "smoke"}))
    (out / "world.json").write_text("{}")  # a finished smoke stage the full run must not take for its own
    assert pico_main(["--output", str(out), "--stage", "tokenizer"]) == 2
    err = capsys.readouterr().err
    assert "smoke run" in err and str(out) in err and err.count("\n") == 1


def test_smoke_pico_run_refuses_a_full_run_folder(tmp_path, capsys):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "run_kind.json").write_text(json.dumps({"kind": "full"}))
    assert pico_main(["--smoke", "--output", str(out), "--stage", "tokenizer"]) == 2
    assert "full run" in capsys.readouterr().err


def test_smoke_default_folder_is_not_the_full_one(tmp_path, monkeypatch):
    import cosmos3.train.pico as pico

    seen = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pico, "run", lambda plan, only: seen.setdefault("output", plan.output) / "pico")
    assert pico_main(["--smoke", "--quiet"]) == 0
    assert seen["output"].name == "pico-smoke"
    assert json.loads((seen["output"] / "run_kind.json").read_text()) == {"kind": "smoke"}
