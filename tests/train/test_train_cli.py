"""The command line in-process: flags over a recipe, metrics JSONL, checkpoints, export, the precompute and
export subcommands, and one-line errors with exit status 2."""

import json

from cosmos3.train.__main__ import train_main
from cosmos3.train.recipe import load_recipe
from train_helpers import REPO, ROOT, read_metrics, tiny_checkpoint, video_folder


def test_flags_precompute_train_export(capsys):
    latents = ROOT / "cli-latents"
    assert train_main(["precompute", "--checkpoint", str(tiny_checkpoint()), "--data", str(video_folder()),
                       "--data-kind", "video", "--output", str(latents), "--height", "32", "--width", "32",
                       "--set", "data.num_frames=5"]) == 0
    assert len((latents / "index.jsonl").read_text().splitlines()) == 2
    run = ROOT / "cli-run"
    argv = ["--recipe", str(REPO / "recipes" / "lora_video_sft.toml"), "--checkpoint", str(tiny_checkpoint()),
            "--data", str(latents), "--data-kind", "latents", "--output", str(run), "--steps", "3",
            "--batch-size", "2", "--lr", "1e-3", "--save-every", "2", "--lora-rank", "2", "--quiet",
            "--set", "optim.warmup_steps=1", "--set", "run.keep_checkpoints=1"]
    assert train_main(argv) == 0
    metrics = read_metrics(run)
    assert sorted(metrics) == [1, 2, 3]
    assert {"loss", "lr", "grad_norm", "tokens", "tokens_per_s", "peak_memory_bytes"} <= set(metrics[3])
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == ["step-00000003"]  # keep_checkpoints = 1
    saved = json.loads((run / "recipe.json").read_text())
    assert saved["lora"]["rank"] == 2 and saved["model"]["train"] == "lora" and saved["optim"]["lr"] == 1e-3
    assert (run / "export" / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "export" / "checkpoint" / "transformer" / "config.json").is_file()
    again = ROOT / "cli-export"
    assert train_main(["export", "--run", str(run), "--output", str(again)]) == 0
    assert (again / "adapter" / "adapter_config.json").is_file()
    assert (again / "checkpoint" / "model_index.json").is_file()
    # a finished run resumes at its end and does nothing more
    assert train_main(argv) == 0
    assert "resumed from" in capsys.readouterr().out and sorted(read_metrics(run)) == [1, 2, 3]


def test_bad_values_exit_2(capsys, tmp_path):
    base = ["--checkpoint", str(tiny_checkpoint()), "--data", "x", "--output", str(tmp_path)]
    assert train_main([*base, "--set", "optim.lr=fast"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert train_main([*base, "--set", "loss.sigma_sampling=beta"]) == 2
    assert "loss.sigma_sampling" in capsys.readouterr().err
    assert train_main([*base, "--set", "nope.x=1"]) == 2
    assert train_main(["--data", "x"]) == 2
    assert "model.checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    assert train_main(["--recipe", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert train_main([*base, "--data-kind", "latents", "--data", str(tmp_path)]) == 2
    assert "index.jsonl" in capsys.readouterr().err


def test_example_recipes_are_valid():
    for path in sorted((REPO / "recipes").glob("*.toml")):
        recipe = load_recipe(path)
        recipe.validate()


def test_time_cap_pauses_with_a_checkpoint_and_the_same_command_continues(capsys, monkeypatch):
    """run.max_hours: the pico stages' 2.5 h cap. A fake clock that advances 20 s per reading makes the cap fall
    mid-run; the paused run saves its step, exports nothing and exits 3; rerun without the cap, it goes on from there."""
    import cosmos3.train.loop as loop

    latents = ROOT / "cap-latents"
    train_main(["precompute", "--checkpoint", str(tiny_checkpoint()), "--data", str(video_folder()),
                "--data-kind", "video", "--output", str(latents), "--height", "32", "--width", "32",
                "--set", "data.num_frames=5"])
    run = ROOT / "cap-run"
    argv = ["--checkpoint", str(tiny_checkpoint()), "--data", str(latents), "--data-kind", "latents",
            "--output", str(run), "--steps", "6", "--batch-size", "1", "--save-every", "0", "--quiet",
            "--train", "gen", "--set", "optim.warmup_steps=1"]
    clock = iter(range(0, 10**6, 20))

    class FakeTime:
        perf_counter = staticmethod(lambda: float(next(clock)))
        time = staticmethod(loop.time.time)

    monkeypatch.setattr(loop, "time", FakeTime)
    assert train_main([*argv, "--set", "run.max_hours=0.05"]) == 3  # 180 s = 9 readings of the fake clock
    out = capsys.readouterr().out
    paused_at = sorted(read_metrics(run))[-1]
    assert 1 <= paused_at < 6 and f"paused at step {paused_at}/6" in out
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == [f"step-{paused_at:08d}"]
    assert not (run / "export").exists()
    monkeypatch.undo()
    assert train_main(argv) == 0
    assert f"resumed from {run / 'checkpoints' / f'step-{paused_at:08d}'}" in capsys.readouterr().out
    assert sorted(read_metrics(run)) == [1, 2, 3, 4, 5, 6]
    assert (run / "export" / "checkpoint" / "model_index.json").is_file()
    assert train_main([*argv, "--set", "run.max_hours=-1"]) == 2
    assert "run.max_hours" in capsys.readouterr().err
