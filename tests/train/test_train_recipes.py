"""Each example recipe, shrunk to the tiny checkpoint and data, overfits one fixed batch: the loss ends far below
where it started. The recipe's own choices (what trains, loss rules, conditioning mix, LoRA targets, activation
checkpointing) are kept; only sizes, paths, step count and learning rate are overridden."""

from pathlib import Path

import pytest
import torch

from cosmos3.train.loop import Trainer
from cosmos3.train.recipe import load_recipe, set_value
from train_helpers import (REPO, ROOT, chat_file, lerobot_dataset, media_chat_file, tiny_checkpoint, video_folder,
                           vl_checkpoint)

SHRINK = {
    "action_lerobot": lambda: {"data.path": lerobot_dataset(), "data.chunk_size": 4, "data.stride": 4,
                               "optim.lr": 3e-3, "data.sound": True},  # vision + actions + sound
    "lora_video_sft": lambda: {"data.path": video_folder(), "data.num_frames": 5, "optim.lr": 1e-2},
    "reasoner_sft": lambda: {"data.path": chat_file(), "optim.lr": 3e-3},
}


def shrunk(name: str):
    recipe = load_recipe(REPO / "recipes" / f"{name}.toml")
    values = {"model.checkpoint": tiny_checkpoint(), "data.height": 32, "data.width": 32, "run.steps": 15,
              "run.batch_size": 2, "run.output": ROOT / f"recipe-{name}", "run.save_every": 0, "run.export": False,
              "run.progress": False, "run.overfit_batch": True, "optim.warmup_steps": 2, "optim.schedule": "constant",
              "data.use_system_prompt": False, **SHRINK[name]()}
    for key, value in values.items():
        set_value(recipe, key, str(value) if isinstance(value, Path) else value)
    return recipe


@pytest.mark.parametrize("name", sorted(SHRINK))
def test_recipe_overfits_a_tiny_batch(name):
    trainer = Trainer(shrunk(name))
    history = trainer.fit()
    losses = [m["loss"] for m in history]
    print(name, [round(x, 3) for x in losses])
    assert len(losses) == 15
    start, end = losses[0], sum(losses[-3:]) / 3
    assert end < 0.3 * start, f"{name}: loss {start:.3f} -> {end:.3f}"
    assert all(m["tokens"] > 0 and m["tokens_per_s"] > 0 for m in history)
    if name == "action_lerobot":  # every modality contributed
        assert {"loss_vision", "loss_actions", "loss_sound"} <= set(history[-1])
    # what trained is what the recipe asked for
    trained = set(trainer.named_trainable)
    mode = trainer.recipe.model.train
    if mode == "lora":
        assert trained and all("lora_" in n for n in trained)
    elif mode == "gen":
        assert "proj_in.weight" in trained and "embed_tokens.weight" not in trained
    elif mode == "und":
        assert "embed_tokens.weight" in trained and "proj_in.weight" not in trained
    assert (Path(trainer.recipe.run.output) / "metrics.jsonl").is_file()
    assert (Path(trainer.recipe.run.output) / "checkpoints" / "latest").is_file()


def test_reasoner_sft_with_images():
    """Chat records with images: the frozen vision tower's features (and deepstack features) feed the und pathway,
    the loss is on the answers only, and it falls on a fixed batch."""
    recipe = shrunk("reasoner_sft")
    for key, value in {"model.checkpoint": vl_checkpoint(), "data.path": media_chat_file(),
                       "run.output": ROOT / "recipe-reasoner-images"}.items():
        set_value(recipe, key, str(value))
    recipe.run.steps = 10
    trainer = Trainer(recipe)
    vision = trainer.module.vision[0]
    before = {k: v.clone() for k, v in vision.state_dict().items()}
    sample = trainer._prepare([(0, 0)])[0]
    assert sample.media and int(sample.visual_mask.sum()) == sample.media[0].num_tokens(2)
    assert not bool((sample.labels & sample.visual_mask).any())
    losses = [m["loss"] for m in trainer.fit()]
    assert sum(losses[-3:]) / 3 < 0.3 * losses[0], losses
    assert all(torch.equal(before[k], v) for k, v in vision.state_dict().items())


@pytest.mark.parametrize("mode", ["und", "vision"])
def test_reasoner_sft_can_train_the_vision_tower(mode, tmp_path):
    """model.train_vision: the tower's weights move and reach the export's vision_encoder/; with model.train =
    vision the network itself stays bit-identical (generation is untouched)."""
    from safetensors.torch import load_file

    recipe = shrunk("reasoner_sft")
    for key, value in {"model.checkpoint": vl_checkpoint(), "data.path": media_chat_file(),
                       "run.output": tmp_path / "run", "model.train": mode, "model.train_vision": "true",
                       "run.export": "true", "run.steps": 8}.items():
        set_value(recipe, key, str(value))
    trainer = Trainer(recipe)
    net_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    losses = [m["loss"] for m in trainer.fit()]
    assert losses[-1] < losses[0], losses
    base = load_file(str(next((vl_checkpoint() / "vision_encoder").glob("*.safetensors"))))
    exported = load_file(str(tmp_path / "run" / "export" / "checkpoint" / "vision_encoder" / "model.safetensors"))
    assert base.keys() == exported.keys() and any(not torch.equal(base[k], exported[k]) for k in base)
    unchanged = all(torch.equal(net_before[k], v) for k, v in trainer.model.state_dict().items())
    assert unchanged == (mode == "vision")


def test_vision_mode_needs_train_vision():
    recipe = shrunk("reasoner_sft")
    set_value(recipe, "model.train", "vision")
    with pytest.raises(ValueError, match="train_vision"):
        recipe.validate()


def test_packing_is_a_data_setting_of_every_kind():
    recipe = shrunk("reasoner_sft")
    for kind in ("chat", "lerobot", "latents"):
        set_value(recipe, "data.kind", kind)
        set_value(recipe, "data.pack", "true")
        recipe.validate()
        assert recipe.data.pack is True
    with pytest.raises(ValueError, match="data.pack"):
        set_value(recipe, "data.pack", "sometimes")
