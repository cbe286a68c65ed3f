"""The pico recipe end to end at smoke size (what CI runs of it): every stage, then the shipped folder loads in our
Generator / Reasoner and in diffusers' Cosmos3OmniPipeline, and both give the same latents for the same seed."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3.checkpoint import CheckpointError, resolve_checkpoint
from cosmos3.train.pico import PicoPlan, run
from cosmos3.train.pico_design import DESIGNS, NATIVE, PICO_CONFIG
from oracle import folder_parity_error
from seeding import fresh_seed


def _benchmark(name: str):
    """benchmarks/<name>.py loaded as a module (the benchmarks folder is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("pico")
    plan = PicoPlan.smoke(out)
    plan.seed = fresh_seed("train/test_train_pico.py::smoke") % 1000
    plan.progress = False
    print(f"pico smoke seed {plan.seed}")
    return run(plan), plan


def test_every_stage_reports_and_a_second_run_skips_them(smoke, capsys):
    folder, plan = smoke
    stages = ["world", "tokenizer", "vae", "audio", "assemble", "latents", "reasoner", "vision", "generator",
              "ship"]
    figures = {s: json.loads((plan.output / f"{s}.json").read_text()) for s in stages}
    assert figures["generator"]["steps"] == plan.generator_steps
    assert figures["ship"]["megabytes"] < 40
    from safetensors.torch import load_file

    start = load_file(str(plan.output / "ckpt" / "vision_encoder" / "model.safetensors"))
    shipped = load_file(str(folder / "vision_encoder" / "model.safetensors"))
    assert start.keys() == shipped.keys() and any(not torch.equal(start[k], shipped[k]) for k in start)  # trained
    mtime = (folder / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_mtime
    run(plan)
    assert capsys.readouterr().out.count("done already") == len(stages)
    assert (folder / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_mtime == mtime


def test_components_are_the_release_classes_and_shapes(smoke):
    from diffusers import AutoencoderKLWan, Cosmos3AVAEAudioTokenizer

    folder, _ = smoke
    vae = AutoencoderKLWan.from_pretrained(folder / "vae")
    assert (vae.config.z_dim, vae.config.patch_size, vae.config.scale_factor_spatial,
            vae.config.scale_factor_temporal, vae.config.is_residual) == (48, 2, 16, 4, True)
    assert np.all(np.asarray(vae.config.latents_std) > 0)
    audio = Cosmos3AVAEAudioTokenizer.from_pretrained(folder / "sound_tokenizer")
    assert (audio.config.sampling_rate, audio._hop_size, audio.config.vocoder_input_dim) == (
        48000, 1920, PICO_CONFIG["sound_dim"])
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "Cosmos3OmniPipeline" and "cosmos3_defaults" not in index
    assert json.loads((folder / "cosmos3_defaults.json").read_text()) == NATIVE
    # the generator learnt both embodiments' actions normalized with the training world's statistics
    from cosmos3.actions import ACTION_STATS_FILE, load_stats_file

    stats = load_stats_file(folder / ACTION_STATS_FILE)
    assert set(stats) == {"umi", "camera_pose"}
    for name, dataset in (("umi", "tabletop"), ("camera_pose", "camera")):
        world = json.loads((folder.parent / "world" / dataset / "meta" / "stats.json").read_text())["action"]
        np.testing.assert_allclose(stats[name].q01, world["q01"])
        np.testing.assert_allclose(stats[name].q99, world["q99"])


def test_tokenizer_keeps_qwen_specials_and_round_trips_world_text(smoke):
    from cosmos3.tokenizers import QWEN_SPECIAL_TOKENS, TextTokenizer

    folder, plan = smoke
    tok = TextTokenizer.from_pretrained(folder / "text_tokenizer")
    ids = [tok.token_id(t) for t, _ in QWEN_SPECIAL_TOKENS]
    assert ids == sorted(ids) and ids == list(range(ids[0], ids[0] + len(ids)))  # Qwen order, contiguous
    line = json.loads((plan.output / "world" / "chat.jsonl").read_text().splitlines()[0])
    text = line["messages"][1]["content"] + " ünïcode 字"
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(line["messages"][1]["content"])) < len(line["messages"][1]["content"].encode())
    chat = tok.apply_chat_template([{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}])
    assert "<|vision_start|><|video_pad|><|vision_end|>hi" in chat


def test_shipped_folder_matches_the_reference_pipeline(smoke):
    folder, _ = smoke
    seed = fresh_seed("train/test_train_pico.py::test_shipped_folder_matches_the_reference_pipeline")
    err = folder_parity_error(folder, "A robot gripper pushes the red square to the left.", seed, num_frames=5,
                              height=192, width=320, fps=16.0, num_inference_steps=2, guidance_scale=3.0,
                              flow_shift=NATIVE["flow_shift"], enable_sound=True)
    assert err < 1e-4


def test_prompt_only_uses_the_native_settings(smoke):
    from cosmos3.generator import Generator

    folder, _ = smoke
    gen = Generator.from_pretrained(folder)
    res = gen.generate("A robot gripper pushes the red square to the left.", num_inference_steps=1, seed=0,
                       progress=False)
    assert tuple(res.frames.shape) == (NATIVE["num_frames"], 192, 320, 3) and res.fps == NATIVE["fps"]
    res = gen.generate("Push the red square to the left.", action_mode="policy", embodiment="umi",
                       image=Image.fromarray(np.zeros((192, 320, 3), np.uint8)), num_inference_steps=1, seed=0,
                       progress=False)
    assert tuple(res.actions.shape) == (NATIVE["action_chunk_size"], 10)
    assert res.frames.shape[0] == NATIVE["action_chunk_size"] + 1


def test_reasoner_loads_the_shipped_folder(smoke):
    from cosmos3.reasoner import Reasoner

    folder, plan = smoke
    rsn = Reasoner.from_pretrained(folder)
    video = sorted((plan.output / "world" / "tabletop" / "videos").rglob("*.mp4"))[0]
    out = rsn.chat([{"role": "user", "content": [{"type": "video", "video": str(video)},
                                                 {"type": "text", "text": "How many blocks are on the table?"}]}],
                   max_tokens=4, temperature=0.0)
    assert out.usage["completion_tokens"] >= 1 and out.finish_reason in ("stop", "length")


def test_embedded_name_resolution(tmp_path, monkeypatch):
    import cosmos3.checkpoint as ck

    monkeypatch.setitem(ck.EMBEDDED, "pico", tmp_path / "absent")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="embedded 'pico' weights are missing"):
        resolve_checkpoint("pico")
    (tmp_path / "pico").mkdir()  # a local folder of that name wins
    assert resolve_checkpoint("pico") == ck.Path("pico")
    assert resolve_checkpoint(tmp_path / "other") == tmp_path / "other"


# ---------------------------------------------------------------------------------------------- pico v2 (issue 21)


def test_v1_design_keeps_the_world_defaults_and_every_stage():
    from cosmos3.train.pico import ALL_STAGES, DESIGNS, PicoPlan
    from cosmos3.world.export import WorldConfig

    v1 = DESIGNS["v1"]
    assert v1.world.config() == WorldConfig() and v1.stages == ALL_STAGES and v1.world.num_frames == 33
    assert (PicoPlan().design, PicoPlan().vae_steps, v1.vae.spatial, v1.vae.base_dim) == ("v1", 1500, 16, 8)
    v2 = DESIGNS["v2"]
    cfg = v2.world.config()
    assert cfg.tabletop.num_frames == 17 and cfg.tabletop.table.px_per_m > cfg.tabletop.table.__class__().px_per_m
    assert cfg.camera.duration_s == cfg.tabletop.duration_s and v2.vae.spatial == 8


def test_v2_vae_moves_to_longer_windows_after_its_short_phase():
    from cosmos3.train.pico import DESIGNS
    from cosmos3.train.pico_vae import window_frames

    d = DESIGNS["v2"].vae
    (a, fa), (b, fb) = d.longer
    assert 0 < a < b < d.steps and d.frames < fa < fb == DESIGNS["v2"].world.num_frames
    assert all((f - 1) % 4 == 0 for f in (d.frames, fa, fb))
    assert [window_frames(d, s) for s in (0, a - 1, a, b - 1, b, d.steps - 1)] == [d.frames, d.frames, fa, fa, fb, fb]
    assert window_frames(DESIGNS["v1"].vae, 10 ** 6) == DESIGNS["v1"].vae.frames


def test_v2_world_and_vae_pause_resume_and_match_an_uninterrupted_run(tmp_path):
    import shutil

    from diffusers import AutoencoderKLWan
    from safetensors.torch import load_file

    from cosmos3.train.pico import PicoPlan, StagePaused, run
    from cosmos3.lerobot import LeRobotDataset

    def plan_at(out):
        plan = PicoPlan.smoke(out, "v2")
        plan.progress, plan.vae_steps, plan.vae_eval_every, plan.heldout_clips = False, 3, 2, (1, 0)
        return plan

    a = plan_at(tmp_path / "a")
    a.stage_hours = 1e-9  # stops after the first step
    stages = ["world", "vae"]  # the rest of v2 runs in the recipe's own smoke test
    with pytest.raises(StagePaused, match="step 1/3"):
        run(a, stages)
    assert (a.output / "vae_train" / "state.pt").is_file() and not (a.output / "vae.json").exists()
    from cosmos3.train.pico import main

    assert main(["--design", "v2", "--output", str(a.output), "--snapshot", str(tmp_path / "snap")]) == 0
    state = torch.load(a.output / "vae_train" / "state.pt", weights_only=False)
    snap = AutoencoderKLWan.from_pretrained(tmp_path / "snap" / "vae").state_dict()
    assert state["step"] == 1 and all(torch.equal(snap[k], v) for k, v in state["vae"].items())
    carried = tmp_path / "carried"  # what a session commits, so that a fresh machine resumes the stage
    assert main(["--design", "v2", "--output", str(a.output), "--carry-state", str(carried)]) == 0
    b, c = plan_at(tmp_path / "b"), plan_at(tmp_path / "c")  # the same world: b trained without a pause, c from
    for other in (b, c):                                        # the carried state
        other.output.mkdir()
        for name in ("world", "eval_world", "world.json", "design.json"):
            (shutil.copytree if (a.output / name).is_dir() else shutil.copy)(a.output / name, other.output / name)
    from cosmos3.train.pico_vae import adopt_state

    with pytest.raises(ValueError, match="carries a pico v2 VAE state, not v1"):
        adopt_state(carried, c.output, "v1")
    assert adopt_state(carried, c.output, "v2")["step"] == 1
    a.stage_hours = None
    run(a, stages)
    run(b, stages)
    run(c, stages)
    assert adopt_state(carried, c.output, "v2") is None  # the run is ahead of what is carried: kept
    finished = tmp_path / "finished"  # a finished stage carries its VAE and figures: a fresh run skips the stage
    assert main(["--design", "v2", "--output", str(a.output), "--carry-state", str(finished)]) == 0
    fresh = tmp_path / "fresh"
    assert adopt_state(finished, fresh, "v2")["finished"]
    assert json.loads((fresh / "vae.json").read_text()) == json.loads((a.output / "vae.json").read_text())
    name = "diffusion_pytorch_model.safetensors"
    assert (fresh / "ckpt" / "vae" / name).read_bytes() == (a.output / "ckpt" / "vae" / name).read_bytes()
    figures = json.loads((a.output / "vae.json").read_text())
    assert figures["steps"] == 3 and figures["latent_hw"] == [24, 40] and figures["heldout_clips"] == 1
    curve = [json.loads(r) for r in (a.output / "vae_train" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [2, 3] and all(r["heldout_psnr_db"] > 0 for r in curve)
    from PIL import Image

    assert main(["--design", "v2", "--output", str(a.output), "--plot", str(tmp_path / "curve.png")]) == 0
    assert Image.open(tmp_path / "curve.png").size == (640, 2 * (220 + 16) + 24)
    wa = load_file(str(a.output / "ckpt" / "vae" / "diffusion_pytorch_model.safetensors"))
    wb = load_file(str(b.output / "ckpt" / "vae" / "diffusion_pytorch_model.safetensors"))
    wc = load_file(str(c.output / "ckpt" / "vae" / "diffusion_pytorch_model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) and torch.equal(wc[k], wb[k]) for k in wa)
    vae = AutoencoderKLWan.from_pretrained(a.output / "ckpt" / "vae")
    assert (vae.config.scale_factor_spatial, vae.config.z_dim) == (8, 48)
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 17, 192, 320)).latent_dist.mode()
    assert tuple(z.shape) == (1, 48, 5, 24, 40)
    ds = LeRobotDataset(a.output / "world" / "tabletop", chunk_size=16, stride=16)
    assert tuple(ds[0]["frames"].shape) == (17, 192, 320, 3)
    with pytest.raises(ValueError, match="holds a pico v2 run"):
        run(PicoPlan.smoke(a.output))


@pytest.fixture(scope="module")
def v2_gpu_smoke(tmp_path_factory):
    """recipes/pico_gpu.sh at smoke size on the CPU: every v2 stage in bf16 autocast at 2x batches, then the shipped
    folder exported as shards: (run folder, export folder, the command's stdout)."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    tmp = tmp_path_factory.mktemp("pico_v2")
    dest, run_dir = tmp / "weights", tmp / "run"
    env = dict(os.environ, PICO_GPU_RUN=str(run_dir), OMP_NUM_THREADS="1", PICO_GPU_TIMEOUT="1100")  # a loaded CPU
    proc = subprocess.run(["bash", str(root / "recipes" / "pico_gpu.sh"), str(dest), "--smoke", "--device", "cpu",
                           "--batch-scale", "2", "--workers", "1", "--vae-steps", "2", "--max-shard-mb", "1.5"],
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, dest, proc.stdout


def test_gpu_recipe_steps_at_smoke_size_write_sharded_weights_that_load(v2_gpu_smoke):
    from diffusers import AutoencoderKLWan
    from safetensors.torch import load_file

    run_dir, dest, stdout = v2_gpu_smoke
    figures = json.loads((run_dir / "vae.json").read_text())
    assert (figures["device"], figures["bf16"], figures["batch_size"], figures["steps"]) == ("cpu", True, 8, 2)
    files = [f for f in dest.rglob("*") if f.is_file()]
    assert files and max(f.stat().st_size for f in files) <= 1.5 * 2**20
    index = json.loads((dest / "vae" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and not (dest / "vae" / "diffusion_pytorch_model.safetensors"
                                                                ).exists()
    loaded = AutoencoderKLWan.from_pretrained(dest / "vae").state_dict()
    trained = load_file(str(run_dir / "ckpt" / "vae" / "diffusion_pytorch_model.safetensors"))
    assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], trained[k]) for k in trained)
    assert f"pico weights: {dest}" in stdout


def test_v2_runs_its_stages_in_order_and_ships_the_trained_vae_not_the_placeholder(v2_gpu_smoke):
    from safetensors.torch import load_file

    from cosmos3.train.pico_design import ALL_STAGES, DESIGNS

    run_dir, _, stdout = v2_gpu_smoke
    v2 = DESIGNS["v2"]
    started = [line.split()[1] for line in stdout.splitlines() if line.startswith("[pico] ") and line.endswith(" ...")]
    assert started == list(v2.stages) and set(v2.stages) == set(ALL_STAGES)
    assert v2.stages.index("reasoner") < v2.stages.index("vae") < v2.stages.index("latents")
    assert all((run_dir / f"{s}.json").is_file() for s in v2.stages)
    assert json.loads((run_dir / "ship.json").read_text())["megabytes"] < 40
    name = "diffusion_pytorch_model.safetensors"
    trained = load_file(str(run_dir / "ckpt" / "vae" / name))
    placeholder = load_file(str(run_dir / "reasoner" / "export" / "checkpoint" / "vae" / name))
    shipped = load_file(str(run_dir / "pico" / "vae" / name))
    assert all(torch.equal(shipped[k], trained[k]) for k in trained)
    assert any(not torch.equal(placeholder[k], trained[k]) for k in trained)
    assert json.loads((run_dir / "pico" / "cosmos3_defaults.json").read_text()) == v2.native
    sample = next((run_dir / "latents").glob("tabletop-*-video.safetensors"))
    assert tuple(load_file(str(sample))["vision"].shape) == (48, 5, 24, 40)  # 17 frames, 8x VAE


def test_v2_shipped_model_generates_at_its_native_size_in_every_mode(v2_gpu_smoke):
    from cosmos3.actions import load_actions
    from cosmos3.demo import demo_inputs
    from cosmos3.generator import Generator
    from cosmos3.train.pico_design import DESIGNS

    folder = v2_gpu_smoke[0] / "pico"
    native = DESIGNS["v2"].native
    gen = Generator.from_pretrained(folder)
    res = gen.generate("A robot gripper pushes the red square to the left.", num_inference_steps=1, seed=0,
                       progress=False)
    assert tuple(res.frames.shape) == (native["num_frames"], 192, 320, 3)
    frame_file, action_file = demo_inputs(folder)
    actions = load_actions(action_file, "umi")
    assert actions.shape == (2 * native["action_chunk_size"], 10)  # the demo's rollout: two chunks
    frame = Image.open(frame_file).convert("RGB")
    res = gen.generate(action_mode="forward_dynamics", embodiment="umi", image=frame, actions=actions,
                       num_inference_steps=1, seed=0, progress=False)
    # every chunk decodes the whole 8x latent grid (the crop to the content once assumed 16x cells: half the frame)
    assert tuple(res.frames.shape) == (2 * native["action_chunk_size"] + 1, 192, 320, 3)
    res = gen.generate("Push the red square to the left.", action_mode="policy", embodiment="umi", image=frame,
                       num_inference_steps=1, seed=0, progress=False)
    assert tuple(res.actions.shape) == (native["action_chunk_size"], 10)


def test_a_finished_generator_continues_to_more_steps_from_its_last_checkpoint(v2_gpu_smoke):
    """--generator-steps on a finished run: the stage resumes at the old total (not from step 0), trains to the new
    one and exports again; a count below 1 is refused before anything runs."""
    import os
    import subprocess
    import sys

    run_dir = v2_gpu_smoke[0]
    metrics = run_dir / "generator" / "metrics.jsonl"
    done = json.loads(metrics.read_text().splitlines()[-1])["step"]
    exported = run_dir / "generator" / "export" / "checkpoint" / "transformer"
    before = {f.name: f.stat().st_mtime_ns for f in exported.glob("*.safetensors")}
    cmd = [sys.executable, "-m", "cosmos3.train.pico", "--design", "v2", "--smoke", "--output", str(run_dir),
           "--stage", "generator", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    bad = subprocess.run(cmd + ["--generator-steps", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--generator-steps must be >= 1" in bad.stderr
    proc = subprocess.run(cmd + ["--generator-steps", str(done + 2)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"at step {done}" in proc.stdout
    steps = [json.loads(r)["step"] for r in metrics.read_text().splitlines() if r.strip()]
    assert steps[-2:] == [done + 1, done + 2] and steps.count(done + 1) == 1
    after = {f.name: f.stat().st_mtime_ns for f in exported.glob("*.safetensors")}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before)


def test_loss_by_sigma_benchmark_chains_end_nearer_the_truth_the_later_they_start(v2_gpu_smoke, tmp_path, capsys):
    """benchmarks/pico_loss_by_sigma.py on the smoke run: a table row per (task, sigma) from the stage's own latents,
    its static / moving split adds up to the whole, the action probe reaches the network (with the caption and
    without it), and its sampling chain, started from the truth noised to 0.02, ends far nearer the truth than one
    from noise (for any network: the start is what the chain carries); a folder that is not a run is refused."""
    bench = _benchmark("pico_loss_by_sigma")
    run_dir = v2_gpu_smoke[0]
    trainer = bench.trainer_for(run_dir, run_dir / "pico", tmp_path / "out")
    videos, clips = bench.first_items(trainer, 2)
    assert all(v.actions is None for v in videos) and all(c.actions is not None for c in clips)
    rows = bench.measure(trainer, videos, clips, fresh_seed())
    assert [(r["task"], r["sigma"]) for r in rows] == [(t, s) for t in bench.TASKS for s in bench.SIGMAS]
    assert all(r["n"] == 2 and r["velocity_mse"] > 0 and 0 <= r["moving_share"] <= 1 for r in rows)
    for r in rows:  # the split is of the same error: its position-weighted mean is the whole
        parts = [(r["x0_mse_moving"] or 0.0, r["moving_share"]), (r["x0_mse_static"] or 0.0, 1 - r["moving_share"])]
        assert sum(e * w for e, w in parts) == pytest.approx(r["x0_mse"], rel=1e-3, abs=1e-6)
    seed = fresh_seed()
    fd = {r["sigma"]: r for r in bench.measure(trainer, videos, clips, seed) if r["task"] == "forward_dynamics"}
    probe, no_caption = bench.action_probe(trainer, clips, seed, sigmas=(0.95,))
    assert (probe["caption"], no_caption["caption"]) == (True, False)
    assert probe["moving_positions"] == no_caption["moving_positions"] > 0
    from cosmos3.train.batch import prepare_gen

    dropped = [prepare_gen(clips[0], 0, seed, bench.fixed(trainer.recipe.loss, "forward_dynamics", 0.95, caption),
                           trainer.tokenizer.backend, trainer.model, trainer.recipe.data.use_system_prompt).dropped
               for caption in (True, False)]
    assert dropped == [False, True]  # the captionless rows see the negative prompt, as guidance's other branch
    assert probe["moving_x0_mse_own_actions"] == pytest.approx(fd[0.95]["x0_mse_moving"], abs=2e-5)
    predict = trainer.module.gen_predictions

    def reads_actions(samples):  # a network whose video moves with the actions it is given
        preds = predict(samples)
        for s, p in zip(samples, preds):
            p.vision = p.vision + 10 * s.noised.inputs.actions.float().mean()
        return preds

    trainer.module.gen_predictions = reads_actions
    loud = bench.action_probe(trainer, clips, seed, sigmas=(0.95,))[0]
    assert len({loud[f"moving_x0_mse_{k}_actions"] for k in ("own", "other_clip", "zeros")}) == 3
    trainer.module.gen_predictions = predict
    noise, late = bench.sample_fd(trainer, clips, fresh_seed(), starts=(1.0, 0.02))
    assert late["sampled_x0_mse"] < 0.05 * noise["sampled_x0_mse"]
    assert bench.main(["--run", str(tmp_path)]) == 2 and "needs generator/recipe.json" in capsys.readouterr().err
    _, umi = bench.first_items(trainer, 2, 6)
    assert len(umi) == 2 and all(c.domain_id == 6 for c in umi)  # the gripper's clips only
    assert bench.main(["--run", str(run_dir), "--embodiment", "av", "--probe-only"]) == 2
    assert "--embodiment av: no such action clips" in capsys.readouterr().err
    assert bench.main(["--run", str(run_dir), "--samples", "2", "--embodiment", "umi", "--probe-only"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["rows"] == [] and out["sampled"] == []
    assert [(r["caption"], r["sigma"]) for r in out["action_probe"]] == [(True, 0.6), (True, 0.95), (False, 0.6),
                                                                          (False, 0.95)]


def test_moving_positions_are_the_path_of_what_moves_over_the_generated_frames():
    """pico_loss_by_sigma's static / moving split: a blob that moves across the generated latent frames marks exactly
    the positions it passes; a change in the clean frame 0 alone (not generated) marks nothing."""
    bench = _benchmark("pico_loss_by_sigma")
    g = torch.Generator().manual_seed(fresh_seed())
    C, T, H, W = 8, 5, 6, 10
    scene = torch.randn(C, 1, H, W, generator=g).expand(C, T, H, W).clone()  # the same at every frame
    row = int(torch.randint(0, H, (1,), generator=g))
    path_cols = []
    for t in range(1, T):  # a blob moving one column a generated frame
        scene[:, t, row, t + 1] += 3.0
        path_cols.append(t + 1)
    scene[:, 0, (row + 3) % H, 0] += 5.0  # frame 0 only, and frame 0 is clean
    noisy = torch.tensor([False] + [True] * (T - 1))
    want = torch.zeros(H, W, dtype=torch.bool)
    want[row, path_cols] = True
    assert torch.equal(bench.moving_positions(scene, noisy), want)
    assert not bench.moving_positions(scene, torch.tensor([True] + [False] * (T - 1))).any()  # one frame: no motion


def test_write_sharded_splits_the_shipped_transformer_and_every_loader_reads_it(tmp_path):
    from pathlib import Path

    from diffusers import Cosmos3OmniTransformer

    from cosmos3.checkpoint import EMBEDDED, load_transformer
    from cosmos3.train.pico_tools import SHARD_LIMIT, write_sharded

    src, dst = Path(EMBEDDED["pico"]), tmp_path / "pico"
    assert (src / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_size > SHARD_LIMIT
    figures = write_sharded(src, dst)
    assert figures["largest_bytes"] < 16 * 2**20
    assert len(list((dst / "transformer").glob("diffusion_pytorch_model-0000*-of-0000*.safetensors"))) >= 2
    ours, theirs = load_transformer(src, dtype=torch.float32), load_transformer(dst, dtype=torch.float32)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ref = Cosmos3OmniTransformer.from_pretrained(dst / "transformer").state_dict()
    assert ref.keys() == a.keys() and all(torch.equal(ref[k].float(), a[k].float()) for k in ref)
    with pytest.raises(ValueError, match="over the 1000-byte shard limit"):
        write_sharded(src / "vae", tmp_path / "tiny", max_bytes=1000)


def test_eval_pico_vae_checks_and_v2_world_config():
    import dataclasses

    from cosmos3.train.pico import DESIGNS
    from cosmos3.world import render_tabletop, simulate_tabletop

    E = _benchmark("eval_pico")
    cfg = DESIGNS["v2"].world.config().tabletop
    recorded = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert E.tabletop_config(recorded) == cfg and E.tabletop_config(recorded).num_frames == 17
    ep = simulate_tabletop(3, cfg)
    frames = render_tabletop(ep)
    color = ep.blocks[0].color
    assert E.block_recognisable(frames, frames, color) == (True, 1.0)
    shifted = np.roll(frames, 6, axis=2)  # every block 6 px to the right: found, but not where it is
    assert not E.block_recognisable(shifted, frames, color)[0]
    grey = np.repeat(frames[:, :, :, :1], 3, axis=3)  # colour lost
    assert E.block_recognisable(grey, frames, color) == (False, 0.0)
    pooled = E.pooled(frames, 8)
    assert pooled.shape == frames.shape and 20 < E.psnr(pooled, frames) < 40
    assert E.mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


def test_stage_markers_are_never_seen_half_written(tmp_path):
    """Two pico processes share a run folder (the VAE beside the other stages): one reads the markers the other
    writes. A plain write_text truncates first, so a reader in between sees an empty file (seen 2026-12-03: the
    second process died with 'Expecting value')."""
    import threading

    from cosmos3.train.components import save_json

    marker = tmp_path / "design.json"
    save_json(marker, {"design": "v2"})
    stop, bad = threading.Event(), []

    def write():
        for i in range(3000):
            save_json(marker, {"design": "v2", "i": i, "pad": "x" * 4096})
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    while not stop.is_set():
        try:
            json.loads(marker.read_text())
        except json.JSONDecodeError as e:
            bad.append(str(e))
        reads += 1
    writer.join()
    assert reads > 10 and not bad, f"{len(bad)} of {reads} reads saw a partial marker: {bad[:1]}"
    assert [p.name for p in tmp_path.iterdir()] == ["design.json"]  # no temporary files left behind


def test_trainer_stage_curve_is_smoothed_deduplicated_and_drawn(tmp_path, capsys):
    """--plot --plot-stage generator: per-step losses of a resumed run (steps 5-6 written twice, the redone
    ones last) become at most 120 windowed means, each over the steps up to it; a missing stage is a one-line error."""
    from PIL import Image

    from cosmos3.train.pico import main
    from cosmos3.train.pico_tools import smoothed

    rng = np.random.default_rng(fresh_seed())
    losses = {s: float(rng.uniform(0, 4)) for s in range(1, 301)}
    row = lambda s: {"step": s, "loss": losses[s], "loss_vision": losses[s] / 2, "loss_sound": 1.0}  # noqa: E731
    killed = [row(s) for s in range(1, 5)] + [{"step": s, "loss": 99.0, "loss_vision": 99.0} for s in (5, 6)]
    rows = killed + [row(s) for s in range(5, 301)]  # resumed from its step-4 checkpoint
    out = smoothed(rows, ("loss", "loss_vision"), window=50, points=120)
    assert len(out) <= 120 and out[-1]["step"] == 300
    for r in out:
        want = [losses[s] for s in range(max(1, r["step"] - 49), r["step"] + 1)]
        assert r["loss"] == pytest.approx(sum(want) / len(want))
        assert r["loss_vision"] == pytest.approx(r["loss"] / 2)
    run = tmp_path / "run"
    (run / "generator").mkdir(parents=True)
    (run / "generator" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = tmp_path / "gen.png"
    assert main(["--design", "v2", "--output", str(run), "--plot", str(png), "--plot-stage", "generator"]) == 0
    assert Image.open(png).size == (640, 3 * (220 + 16) + 24)  # loss, vision, sound: no action losses logged
    assert main(["--design", "v2", "--output", str(run), "--plot", str(png), "--plot-stage", "reasoner"]) == 2
    assert "reasoner/metrics.jsonl: missing" in capsys.readouterr().err


def test_v2_generator_is_continued_to_each_later_total_unless_the_steps_are_overridden(tmp_path, monkeypatch):
    """The shipped v2 generator: 2600 steps, then continued to 3350 (a warm restart); the stage runs the totals in
    order, the continuations with the design's loss changes and the first without, and --generator-steps replaces
    the whole schedule (changes included) with its one total."""
    import cosmos3.train.pico as pico

    plan = PicoPlan.for_design("v2", tmp_path)
    assert (plan.generator_steps, plan.generator_continue) == (2600, (3350,))
    assert plan.generator_continue_loss == dict(DESIGNS["v2"].generator_continue_loss)
    plan.generator_continue, plan.generator_continue_loss = (3000, 3350), {"logit_mean": 0.7, "shift": 5.0}
    trained = []
    monkeypatch.setattr(pico, "_train", lambda p, stage, ckpt, settings: trained.append(
        (stage, settings["run"]["steps"], settings["loss"])) or {"steps": settings["run"]["steps"]})
    assert pico._generator(plan) == {"steps": 3350}
    assert [(stage, steps) for stage, steps, _ in trained] == [("generator", 2600), ("generator", 3000),
                                                              ("generator", 3350)]
    first, *later = [loss for _, _, loss in trained]
    assert "logit_mean" not in first and first["shift"] == 3.0
    assert all(loss["logit_mean"] == 0.7 and loss["shift"] == 5.0 and loss["t2v"] == first["t2v"] for loss in later)
    seen = []
    monkeypatch.setattr(pico, "run", lambda p, only: seen.append(
        (p.generator_steps, p.generator_continue, p.generator_continue_loss)) or tmp_path)
    assert pico.main(["--design", "v2", "--output", str(tmp_path), "--stage", "generator", "--generator-steps", "4000",
                      "--quiet"]) == 0
    assert seen == [(4000, (), {})]
