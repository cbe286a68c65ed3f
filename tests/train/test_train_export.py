"""Export and LoRA round trips. A short LoRA run on the tiny video folder exports its adapter alone and a merged
checkpoint in the official layout. The adapter reloads (ours and peft's own loader) onto a fresh base and gives the
trained network's outputs; merging gives them too; the exported checkpoint loads in diffusers'
Cosmos3OmniPipeline and in our Generator, which then produce the same image."""

import random
import warnings

import numpy as np
import pytest
import torch

from cosmos3.checkpoint import load_transformer
from cosmos3.train.loop import Trainer
from cosmos3.train.recipe import TrainRecipe
from oracle import random_case, relative_error
from train_helpers import ROOT, tiny_checkpoint, video_folder


@pytest.fixture(scope="module")
def trained():
    r = TrainRecipe()
    r.model.checkpoint, r.model.train = str(tiny_checkpoint()), "lora"
    r.lora.rank, r.lora.targets = 4, ["add_q_proj", "add_v_proj", "to_add_out", "down_proj"]
    r.data.kind, r.data.path, r.data.num_frames, r.data.height, r.data.width = "video", str(video_folder()), 5, 32, 32
    r.data.use_system_prompt = False
    r.optim.lr, r.optim.schedule = 1e-2, "constant"
    r.run.output, r.run.steps, r.run.batch_size, r.run.progress = str(ROOT / "lora-run"), 3, 2, False
    trainer = Trainer(r)
    trainer.fit()
    return trainer


def _outputs(model, case):
    with torch.no_grad():
        out, und = model(case["input_ids"], case["text_positions"], case["inputs"], case["gen_positions"])
    return torch.cat([out.vision.flatten(), out.actions.flatten(), out.sound.flatten(), und.flatten()])


def test_adapter_round_trip_and_merge(trained, seed):
    from peft import PeftModel

    from cosmos3.train.lora import load_adapter, merge, read_adapter

    folder = trained.output / "export" / "adapter"
    cfg, state = read_adapter(folder)
    assert cfg.rank == 4 and set(cfg.targets) == {"add_q_proj", "add_v_proj", "to_add_out", "down_proj"}
    assert state and all("lora_" in k for k in state)
    assert any(float(t.abs().max()) > 0 for k, t in state.items() if "lora_B" in k)  # the adapters did train
    assert any(".mlp.down_proj." in k for k in state) and any(".mlp_moe_gen.down_proj." in k for k in state)
    case = random_case(trained.model.config, torch.Generator().manual_seed(seed), random.Random(seed))
    want = _outputs(trained.model.eval(), case)
    fresh = load_transformer(tiny_checkpoint(), dtype=torch.float32)
    base_out = _outputs(fresh, case)
    assert relative_error(base_out, want) > 1e-4  # the adapters change the function
    ours = load_adapter(fresh, folder)
    assert relative_error(_outputs(ours.base_model.model, case), want) < 1e-6
    theirs = PeftModel.from_pretrained(load_transformer(tiny_checkpoint(), dtype=torch.float32), str(folder))
    assert relative_error(_outputs(theirs.base_model.model, case), want) < 1e-6
    merged = merge(ours)
    assert not any("lora_" in k or "base_layer" in k for k in merged.state_dict())
    assert relative_error(_outputs(merged, case), want) < 1e-5
    exported = load_transformer(trained.output / "export" / "checkpoint", dtype=torch.float32)
    assert relative_error(_outputs(exported, case), want) < 1e-5


def test_exported_checkpoint_runs_in_reference_and_ours(trained, seed):
    from diffusers import Cosmos3OmniPipeline

    from cosmos3.generator import Generator

    root = trained.output / "export" / "checkpoint"
    assert {p.name for p in tiny_checkpoint().iterdir()} == {p.name for p in root.iterdir()}
    pipe = Cosmos3OmniPipeline.from_pretrained(root)
    ours = Generator.from_pretrained(root)
    kw = dict(num_frames=1, height=64, width=64, num_inference_steps=3, guidance_scale=3.0, negative_prompt="blurry")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny sizes are off the published table
        res = ours.generate("a red block", seed=seed, progress=False, flow_shift=5.0, **kw)
    ref = pipe("a red block", generator=torch.Generator().manual_seed(seed), output_type="latent",
               enable_safety_check=False, **kw)
    assert relative_error(res.latents, ref.video[0]) < 1e-4
    assert np.isfinite(res.frames.numpy()).all()
