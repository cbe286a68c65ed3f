"""recipes/policy_droid.toml: post-training a joint-space DROID policy from a LeRobot v3 dataset (three cameras as
concat_view, the robot state as a clean action token at frame 0, fresh action heads at 5x the learning rate), on a
tiny random checkpoint and tiny synthetic datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos3.actions import get_embodiment
from cosmos3.action_modes import action_caption
from cosmos3.actions.embodiments import plain_action_caption
from cosmos3.checkpoint import load_transformer
from cosmos3.sequence import GenLayout
from cosmos3.train.__main__ import build_parser, recipe_from_args, train_main
from cosmos3.train.batch import is_action_head
from cosmos3.train.data import Encoder, LeRobotSource
from cosmos3.train.loop import Trainer
from cosmos3.train.recipe import load_recipe, set_value
from fixture_paths import FIXTURES
from seeding import fresh_seed
from train_helpers import REPO, ROOT, tiny_checkpoint

RECIPE = REPO / "recipes" / "policy_droid.toml"
CAMERAS = {"wrist": "observation.image.wrist_image_left", "exterior_1": "observation.image.exterior_image_1_left",
           "exterior_2": "observation.image.exterior_image_2_left"}
COLORS = {"wrist": (220, 40, 40), "exterior_1": (40, 220, 40), "exterior_2": (40, 40, 220)}
FRAMES, CAM_H, CAM_W, FPS = 13, 32, 64, 15
TASK = "put the marker in the cup"
# the release's names for what re-initializes and trains at 5x, in our module names
HEADS = {"action_proj_in.fc.weight", "action_proj_in.bias.weight", "action_proj_out.fc.weight",
         "action_proj_out.bias.weight", "action_modality_embed"}


def write_droid_like(root: Path, present: tuple[str, ...], seed: int) -> dict[str, np.ndarray]:
    """A one-episode LeRobot v3 dataset with DROID's joint columns; info.json lists all three cameras, only the
    `present` ones have videos (a solid colour each). Returns the columns written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cosmos3.media import write_video

    rng = np.random.default_rng(seed)
    cols = {"action.joint_position": rng.normal(size=(FRAMES, 7)), "action.gripper_position": rng.uniform(size=FRAMES),
            "observation.state.joint_positions": rng.normal(size=(FRAMES, 7)),
            "observation.state.gripper_position": rng.uniform(size=FRAMES)}
    features = {k: {"dtype": "float32", "shape": [7] if v.ndim == 2 else []} for k, v in cols.items()}
    features.update({c: {"dtype": "video", "shape": [CAM_H, CAM_W, 3]} for c in CAMERAS.values()})
    for d in ("meta/episodes/chunk-000", "data/chunk-000"):
        (root / d).mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({
        "codebase_version": "v3.0", "robot_type": "panda", "fps": FPS, "features": features,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}))
    table = {"index": pa.array(np.arange(FRAMES)), "episode_index": pa.array(np.zeros(FRAMES, np.int64)),
             "frame_index": pa.array(np.arange(FRAMES)), "timestamp": pa.array(np.arange(FRAMES) / FPS),
             "task_index": pa.array(np.zeros(FRAMES, np.int64))}
    for k, v in cols.items():
        table[k] = pa.array(v.tolist(), type=pa.list_(pa.float64())) if v.ndim == 2 else pa.array(v)
    pq.write_table(pa.table(table), root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"episode_index": [0], "dataset_from_index": [0], "dataset_to_index": [FRAMES],
                             "length": [FRAMES]}), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    # DROID's tasks are several annotations joined by " | ", empty ones included
    pq.write_table(pa.table({"task_index": [0], "task": [f" | {TASK} | "]}), root / "meta" / "tasks.parquet")
    for role in present:
        frames = np.broadcast_to(np.array(COLORS[role], np.uint8), (FRAMES, CAM_H, CAM_W, 3)).copy()
        write_video(root / "videos" / CAMERAS[role] / "chunk-000" / "file-000.mp4", torch.from_numpy(frames), FPS)
    return cols


@pytest.fixture(scope="module")
def three_cameras() -> tuple[Path, dict]:
    root = ROOT / "droid-three"
    return root, write_droid_like(root, tuple(CAMERAS), fresh_seed("three_cameras"))


@pytest.fixture(scope="module")
def one_camera() -> Path:
    root = ROOT / "droid-one"
    write_droid_like(root, ("exterior_2",), fresh_seed("one_camera"))  # as the release's DROID example
    return root


def shrunk(data: Path, output: Path, **more):
    recipe = load_recipe(RECIPE)
    values = {"model.checkpoint": str(tiny_checkpoint()), "data.path": str(data), "data.chunk_size": 4,
              "data.stride": 4, "data.resolution": "256p", "run.steps": 3, "run.batch_size": 2,
              "run.batch_tokens": 16384, "run.output": str(output), "run.save_every": 0, "run.progress": False,
              "model.activation_checkpointing": False, "optim.lr": 1e-3, "data.use_system_prompt": False, **more}
    for key, value in values.items():
        set_value(recipe, key, value)
    return recipe


def region_means(frames: torch.Tensor) -> list[np.ndarray]:
    """Mean colour of the top (rows 0..H), bottom-left and bottom-right of composed frames [T, 3H/2, W, 3]."""
    x = frames.float().numpy()
    return [x[:, :CAM_H].mean((0, 1, 2)), x[:, CAM_H:, :CAM_W // 2].mean((0, 1, 2)),
            x[:, CAM_H:, CAM_W // 2:].mean((0, 1, 2))]


def test_recipe_parses_and_validates():
    r = load_recipe(RECIPE)
    r.validate()
    emb = get_embodiment(r.data.embodiment)
    assert (emb.name, emb.raw_dim, emb.domain_id) == ("policy_droid", 8, 8)
    assert r.data.chunk_size == 32 and r.data.kind == "lerobot" and not r.data.normalize_actions
    assert r.model.reinit_action_heads and r.optim.action_head_lr_mult == 5.0 and r.model.train == "gen"
    assert r.data.concat_view == CAMERAS and r.data.missing_views == "refuse" and r.data.flip_gripper
    assert r.data.caption_format == "json" and r.data.resolution == "480p"  # the release's caption and canvas
    assert (r.loss.policy, r.loss.forward_dynamics, r.loss.inverse_dynamics) == (1.0, 0.0, 0.0)
    # the command line takes it and overrides it
    args = build_parser().parse_args(["--recipe", str(RECIPE), "--checkpoint", "c", "--data", "d", "--set",
                                      "data.missing_views=duplicate", "--set", 'data.concat_view={"wrist": "a", '
                                      '"exterior_1": "b", "exterior_2": "c"}'])
    r2 = recipe_from_args(args)
    assert r2.data.missing_views == "duplicate" and r2.data.concat_view["exterior_1"] == "b"
    for key, value, field in [("data.missing_views", "triplicate", "data.missing_views"),
                              ("data.concat_view", '{"wrist": "a", "exterior_1": "b"}', "data.concat_view"),
                              ("optim.action_head_lr_mult", "0", "optim.action_head_lr_mult"),
                              ("model.train", "lora", "model.reinit_action_heads"),
                              ("data.caption_format", "yaml", "data.caption_format")]:
        bad = load_recipe(RECIPE)
        set_value(bad, key, value)
        with pytest.raises(ValueError, match=field):
            bad.validate()


@pytest.fixture(scope="module")
def trained(three_cameras):
    data, cols = three_cameras
    trainer = Trainer(shrunk(data, ROOT / "policy-droid-run"))
    loaded = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    sample = trainer._prepare([(0, 0)])[0]
    item = trainer.source[0]
    groups = [(g["lr_mult"], {id(p) for p in g["params"]}) for g in trainer.optimizer.param_groups]
    history = trainer.fit()
    return dict(trainer=trainer, loaded=loaded, sample=sample, item=item, groups=groups, history=history, cols=cols)


def test_action_heads_are_reinitialized_and_the_rest_is_loaded(trained):
    base = load_transformer(tiny_checkpoint(), dtype=torch.float32).state_dict()
    loaded = trained["loaded"]
    assert base.keys() == loaded.keys()
    changed = {k for k in base if not torch.equal(base[k], loaded[k])}
    assert changed == HEADS
    # the release's initialization: biases zero, weights truncated at 3 std, std = 1 / sqrt(fan in)
    cfg = trained["trainer"].model.config
    for name, fan_in in [("action_proj_in.fc.weight", cfg.action_dim), ("action_proj_out.fc.weight", cfg.hidden_size),
                         ("action_modality_embed", cfg.hidden_size)]:
        w = loaded[name] * fan_in ** 0.5
        assert float(w.abs().max()) <= 3.0 + 1e-6
        if w.numel() > 1000:  # a truncated (3 std) normal keeps 98.7% of the std
            assert abs(float(w.std()) - 0.987) < 0.05, (name, float(w.std()))
    assert not loaded["action_proj_in.bias.weight"].any() and not loaded["action_proj_out.bias.weight"].any()


def test_action_heads_train_at_five_times_the_learning_rate(trained):
    trainer = trained["trainer"]
    heads = {id(p) for n, p in trainer.named_trainable.items() if n in HEADS}
    assert {n for n in trainer.named_trainable if is_action_head(n)} == HEADS
    by_mult = dict(trained["groups"])
    assert set(by_mult) == {1.0, 5.0} and by_mult[5.0] == heads
    assert by_mult[1.0] == {id(p) for p in trainer.named_trainable.values()} - heads
    lr = trained["history"][-1]["lr"]
    for g in trainer.optimizer.param_groups:
        assert g["lr"] == pytest.approx(lr * (5.0 if {id(p) for p in g["params"]} == heads else 1.0))


def test_a_sample_is_concat_view_plus_state_token(trained):
    trainer, item, sample, cols = trained["trainer"], trained["item"], trained["sample"], trained["cols"]
    # the composition: wrist on top, exterior 1 bottom left, exterior 2 bottom right
    frames = trainer.source.frames(0)
    assert tuple(frames.shape) == (5, CAM_H + CAM_H // 2, CAM_W, 3)
    for mean, role in zip(region_means(frames), ("wrist", "exterior_1", "exterior_2")):
        assert np.abs(mean - COLORS[role]).max() < 12, (role, mean)
    # joint actions of frames 0..3 and the state of frame 0, the gripper as 1 - g
    want_actions = np.c_[cols["action.joint_position"][:4], 1 - cols["action.gripper_position"][:4]]
    want_state = np.r_[cols["observation.state.joint_positions"][0], 1 - cols["observation.state.gripper_position"][0]]
    np.testing.assert_allclose(item.actions.numpy(), want_actions, atol=1e-6)
    np.testing.assert_allclose(item.state.numpy(), want_state, atol=1e-6)
    # the 48x64 composite on the 256p canvas (256x320, as a served request): the caption states the canvas, the
    # latents cover the content (3x4 cells of 16 pixels)
    assert json.loads(item.prompt)["resolution"] == {"H": 256, "W": 320} and not item.templated
    assert (item.height, item.width) == (256, 320) and tuple(item.vision.shape[2:]) == (3, 4)
    assert item.prompt == action_caption(TASK, get_embodiment("policy_droid"), 5, FPS, 256, 320)
    # the state is action token 0, clean, at video frame 0; the 4 actions follow, noisy (policy)
    x = sample.noised.inputs
    assert x.actions.shape[0] == 5 and x.action_noisy.tolist() == [False, True, True, True, True]
    np.testing.assert_allclose(x.actions[0, :8].numpy(), want_state, atol=1e-6)
    assert not x.actions[0, 8:].any()
    layout = dict(latent_shape=tuple(item.vision.shape), vision_noisy=x.vision_noisy, fps=FPS, action_steps=5,
                  action_noisy=x.action_noisy, domain_id=8)
    cfg, L = trainer.model.config, sample.input_ids.shape[0]
    assert torch.equal(sample.gen_positions, GenLayout(**layout, action_first_frame=0).positions(cfg, L))
    assert not torch.equal(sample.gen_positions, GenLayout(**layout, action_first_frame=1).positions(cfg, L))


def test_it_trains_and_exports_a_policy_droid_checkpoint(trained):
    from PIL import Image
    from safetensors.torch import load_file

    from cosmos3.generator import Generator

    history, trainer = trained["history"], trained["trainer"]
    assert len(history) == 3 and all(np.isfinite(m["loss"]) and m["loss_actions"] > 0 for m in history)
    folder = Path(trainer.recipe.run.output) / "export" / "checkpoint"
    defaults = json.loads((folder / "cosmos3_defaults.json").read_text())
    assert defaults["embodiment"] == "policy_droid" and defaults["caption_format"] == "json"
    exported = {}
    for f in (folder / "transformer").glob("*.safetensors"):
        exported.update(load_file(str(f)))
    gen = Generator.from_pretrained(folder, device="cpu")
    net = gen.model.state_dict()
    for name in HEADS:  # the trained heads, not the base's or the fresh ones
        assert torch.allclose(net[name].float(), trainer.model.state_dict()[name].float(), atol=1e-3)
        assert not torch.allclose(net[name].float(), trained["loaded"][name], atol=1e-6)
    image = Image.fromarray(trainer.source.frames(0)[0].numpy())  # the composite the model trained on
    kw = dict(action_mode="policy", embodiment="policy_droid", image=image, action_chunk_size=4,
              num_inference_steps=2, resolution="256p", seed=0, progress=False)
    a = gen.generate(TASK, state=np.linspace(-1, 1, 8), **kw).actions
    b = gen.generate(TASK, state=np.linspace(1, -1, 8), **kw).actions
    assert tuple(a.shape) == (4, 8) and np.isfinite(np.asarray(a)).all()
    assert not np.allclose(np.asarray(a), np.asarray(b))  # the state token reaches the answer
    assert exported  # the export wrote the transformer's weights


def test_one_camera_is_refused_by_name_or_duplicated_on_request(one_camera, capsys):
    encoder = Encoder(tiny_checkpoint(), torch.device("cpu"), False)
    kw = dict(chunk_size=4, stride=4, embodiment="policy_droid", concat_view=CAMERAS, flip_gripper=True,
              action_columns=["action.joint_position", "action.gripper_position"],
              state_columns=["observation.state.joint_positions", "observation.state.gripper_position"])
    with pytest.raises(ValueError) as e:
        LeRobotSource(one_camera, encoder, **kw)
    msg = str(e.value)
    assert CAMERAS["wrist"] in msg and CAMERAS["exterior_1"] in msg and "missing_views" in msg
    assert f"{CAMERAS['exterior_2']} (exterior_2)" not in msg
    with pytest.warns(UserWarning, match=f"{CAMERAS['wrist']} \\(wrist\\), {CAMERAS['exterior_1']}"):
        source = LeRobotSource(one_camera, encoder, missing_views="duplicate", **kw)
    for mean in region_means(source.frames(0)):  # exterior 2 in all three places
        assert np.abs(mean - COLORS["exterior_2"]).max() < 12
    # the command: exit status 2 and one line naming the cameras, before any training
    out = ROOT / "policy-droid-refused"
    code = train_main(["--recipe", str(RECIPE), "--checkpoint", str(tiny_checkpoint()), "--data", str(one_camera),
                       "--output", str(out), "--quiet", "--set", "data.chunk_size=4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and CAMERAS["wrist"] in err and CAMERAS["exterior_1"] in err
    assert not (out / "metrics.jsonl").exists()


def test_the_release_droid_example_is_refused_clearly():
    """The release's DROID slice (or its stand-in) has one camera and one joint: the recipe names the missing
    cameras, and with duplicated views it names the action width it cannot train on."""
    root = FIXTURES / "droid_lerobot_example"
    r = load_recipe(RECIPE)
    kw = dict(chunk_size=4, stride=4, embodiment=r.data.embodiment, concat_view=r.data.concat_view,
              action_columns=r.data.action_columns, state_columns=r.data.state_columns)
    encoder = Encoder(tiny_checkpoint(), torch.device("cpu"), False)
    with pytest.raises(ValueError, match=f"{CAMERAS['wrist']} \\(wrist\\), {CAMERAS['exterior_1']} \\(exterior_1\\)"):
        LeRobotSource(root, encoder, **kw)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="2D actions, but embodiment 'policy_droid' has 8D"):
        LeRobotSource(root, encoder, missing_views="duplicate", **kw)


# The JSON caption of a Policy-DROID sample / request, written out from the release's facts (cosmos-framework
# json_formatter.py ActionPromptJsonFormatter, serialized with json.dumps' default separators by
# text_tokenizer.py / action_policy_server_robolab.py): keys cinematography, actions, duration, fps, resolution,
# aspect_ratio in that order; framing = the concat_view sentence + " " + the DROID dataset's view description; the
# instruction ends with a period; 33 frames at 15 fps = 2.2 s: time rounded ("0:00-0:02"), duration truncated ("2s");
# fps a float; resolution the padded canvas (480p: 544x736 for a 540x640 composite), aspect its table label "4,3";
# no idle_frame (the server sends none).
DROID_JSON_480 = (
    '{"cinematography": {"framing": "This video contains concatenated views from multiple camera perspectives. '
    'The top row is from the wrist-mounted camera. The bottom row contains two horizontally concatenated '
    'third-person perspective views of the scene from opposite sides, with the robot visible."}, '
    '"actions": [{"time": "0:00-0:02", "description": "put the marker in the cup."}], "duration": "2s", '
    '"fps": 15.0, "resolution": {"H": 544, "W": 736}, "aspect_ratio": "4,3"}')


def test_the_json_caption_is_the_releases():
    from cosmos3.action_modes import canvas_for, tier_of
    from cosmos3.actions import ActionError

    emb = get_embodiment("policy_droid")
    # three 360x640 cameras -> a 540x640 composite -> (multiples of 16) the 480p canvas the caption states
    assert canvas_for(540 - 540 % 16, 640, tier_of("480p")) == (544, 736)
    assert action_caption(TASK, emb, 33, 15.0, 544, 736) == DROID_JSON_480  # the default
    assert action_caption(TASK + ".", emb, 33, 15, 544, 736, "json") == DROID_JSON_480
    assert action_caption("", emb, 33, 15.0, 544, 736) == ""  # the unconditional caption stays empty
    # the plain form stays selectable, and is the framework's sentences
    assert action_caption(TASK, emb, 33, 15.0, 544, 736, "plain") == plain_action_caption(TASK, emb, 33, 15.0, 544,
                                                                                            736)
    with pytest.raises(ActionError, match="caption_format: expected one of \\['json', 'plain'\\], got 'yaml'"):
        action_caption(TASK, emb, 33, 15.0, 544, 736, "yaml")


def test_training_and_serving_see_the_same_pixels_and_caption(trained, monkeypatch):
    """One window's three cameras: the training sample (composed, on the canvas) and the openpi request built from
    the same camera images give the VAE the same conditioning frame and the model the same caption."""
    import cosmos3.generator as G
    from cosmos3.generator import Generator
    from cosmos3.policy_server import PolicyEngine, PolicySettings

    trainer, item = trained["trainer"], trained["item"]
    source = trainer.source
    w = source.dataset[0]
    cams = {"wrist": w["frames"][0].numpy()}
    for role, camera in zip(("exterior_1", "exterior_2"), source.views[1:]):
        cams[role] = source.dataset.read_camera(0, camera)[0].numpy()
    trained_pixels = source.canvas(source.frames(0)).pixels[:, :, :1]  # [1, 3, 1, 256, 320]
    assert tuple(trained_pixels.shape) == (1, 3, 1, 256, 320)

    gen = Generator.from_pretrained(Path(trainer.recipe.run.output) / "export" / "checkpoint", device="cpu")
    encoded, texts = [], []
    real_encode, real_inputs = gen.vae.encode, G.branch_inputs
    monkeypatch.setattr(gen.vae, "encode", lambda px: encoded.append(px.clone()) or real_encode(px))
    monkeypatch.setattr(G, "branch_inputs", lambda tok, cfg, t, **kw: texts.append(t) or real_inputs(tok, cfg, t,
                                                                                                     **kw))
    engine = PolicyEngine(gen, "droid", PolicySettings(steps=1, chunk=4, resolution="256p"),
                          camera_size=(CAM_H, CAM_W))
    obs = {"observation/wrist_image_left": cams["wrist"], "observation/exterior_image_1_left": cams["exterior_1"],
           "observation/exterior_image_2_left": cams["exterior_2"], "observation/joint_position": np.zeros(7),
           "observation/gripper_position": np.zeros(1), "prompt": TASK}
    actions, _ = engine.infer(engine.parse(obs), 0)
    assert actions.shape == (4, 8)
    assert torch.equal(encoded[0], trained_pixels)
    assert texts[0] == item.prompt == action_caption(TASK, get_embodiment("policy_droid"), 5, FPS, 256, 320)
    assert json.loads(texts[0])["resolution"] == {"H": 256, "W": 320}


def test_precompute_refuses_a_policy_droid_recipe(three_cameras, capsys):
    data, _ = three_cameras
    out = ROOT / "policy-droid-precompute"
    code = train_main(["precompute", "--recipe", str(RECIPE), "--checkpoint", str(tiny_checkpoint()), "--data",
                       str(data), "--output", str(out), "--set", "data.chunk_size=4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "data.concat_view" in err and "train from the LeRobot dataset directly" in err


def test_a_plain_caption_run_exports_its_caption_format(trained, tmp_path, monkeypatch):
    """A run on the plain sentences says so in the export, so the Generator serves the form it trained on."""
    trainer = trained["trainer"]
    monkeypatch.setattr(trainer.source, "caption_format", "plain")
    (tmp_path / "cosmos3_defaults.json").write_text(json.dumps({"resolution": "256p"}))
    trainer._export_embodiment(tmp_path)
    assert json.loads((tmp_path / "cosmos3_defaults.json").read_text()) == {
        "resolution": "256p", "embodiment": "policy_droid", "caption_format": "plain"}
