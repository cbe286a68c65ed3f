"""What pico is made of and how big each stage is: the network's config, the native generation settings, and the
typed design presets of the recipe (`DESIGNS`: "v1" is the shipped model, "v2" issue 21's easier-to-see world with
an 8x video VAE). `cosmos3.train.pico` runs a design's stages; this file only says what they are."""

from __future__ import annotations

from dataclasses import dataclass, field

# The network: both pathways, Qwen-style, at a size that trains on 2 CPU cores in about an hour.
PICO_CONFIG = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                   intermediate_size=768, vocab_size=2048, latent_channel=48, patch_latent_dim=192,
                   sound_gen=True, sound_dim=16, action_gen=True, action_dim=64, num_embodiment_domains=32,
                   rope_theta=5e6, rms_norm_eps=1e-6)
VISION_CONFIG = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=16,
                     spatial_merge_size=2, temporal_patch_size=2, deepstack_visual_indexes=[0],
                     num_position_embeddings=256)
# What `Generator.generate()` uses on pico when the caller leaves a setting out (model_index.json, cosmos3_defaults).
NATIVE = {"resolution": "256p", "aspect_ratio": "16:9", "num_frames": 33, "fps": 16, "num_inference_steps": 20,
          "guidance_scale": 3.0, "flow_shift": 3.0, "action_chunk_size": 32, "action_num_inference_steps": 20,
          "action_guidance_scale": 1.0}


@dataclass(frozen=True)
class WorldDesign:
    """The synthetic world pico trains and is evaluated on (cosmos3.world settings; all opt-in)."""
    px_per_m: float = 400.0  # image pixels per table meter: larger = blocks and gripper drawn larger
    duration_s: float = 2.0  # clip length at `fps` (frames = 1 + duration * fps, a 4k+1 count)
    fps: int = 16
    gripper_speed: tuple = (0.16, 0.3)  # m/s, drawn per episode

    @property
    def num_frames(self) -> int:
        return 1 + int(round(self.duration_s * self.fps))

    @property
    def chunk(self) -> int:
        """Actions per episode window (a window is chunk + 1 frames: the start frame, then one per action)."""
        return self.num_frames - 1

    def config(self):
        from ..world.camera import CameraConfig
        from ..world.episode import TabletopConfig
        from ..world.export import WorldConfig
        from ..world.geometry import Table

        if self == WorldDesign():
            return WorldConfig()  # v1: the world's own defaults, exactly
        return WorldConfig(tabletop=TabletopConfig(duration_s=self.duration_s, gripper_speed=self.gripper_speed,
                                                   table=Table(px_per_m=self.px_per_m)),
                           camera=CameraConfig(duration_s=self.duration_s))


@dataclass(frozen=True)
class VaeDesign:
    """The video VAE (Wan 2.2 layout: patch 2, residual) and how it trains."""
    base_dim: int = 8
    z_dim: int = 48
    spatial: int = 16  # 16: three 2x stages after the 2x patch; 8: two
    steps: int = 1500
    batch_size: int = 4
    frames: int = 5  # pixel frames per training window (4k+1)
    longer: tuple = ()  # ((from_step, frames), ...): longer windows later on (the held-out clips are 17 frames)
    crop: int = 96  # square training crop (pixels, a multiple of 16)
    lr: float = 1e-3
    train_clips: tuple = (160, 40)  # (tabletop, camera) training episodes it sees
    heldout_clips: tuple = (32, 8)  # held-out (eval world) episodes of the final PSNR; a quarter for the curve
    eval_every: int = 250


@dataclass(frozen=True)
class PicoDesign:
    name: str
    world: WorldDesign
    vae: VaeDesign
    stages: tuple  # the stages this design runs, in order
    stage_hours: float = 2.5  # a resumable stage stops (state saved) after this long; run again to continue
    native: dict = field(default_factory=lambda: dict(NATIVE))  # the shipped model's cosmos3_defaults.json
    reasoner_steps: int = 1000  # SFT of the understanding pathway and vision tower on the world's questions
    vision_steps: int = 1000  # the vision tower alone, network frozen
    generator_steps: int = 2600  # flow matching of the generation pathway
    # then continued from that checkpoint to each of these totals, the cosine recomputed for each (a warm restart);
    # how the shipped v2 was made: its loss was still falling at 2600
    generator_continue: tuple = ()
    # loss settings that differ in those continuations, as (name, value) pairs (e.g. (("logit_mean", 0.7),): more
    # of the noise levels near pure noise)
    generator_continue_loss: tuple = ()


ALL_STAGES = ("world", "tokenizer", "vae", "audio", "assemble", "latents", "reasoner", "vision", "generator", "ship")
DESIGNS = {
    "v1": PicoDesign("v1", WorldDesign(), VaeDesign(), ALL_STAGES),
    # v2, issue 21. World: 560 px/m (blocks 31-37 px across instead of 22-26, the gripper likewise), 17 frames at
    # 16 fps, gripper 0.25-0.35 m/s (140-196 px/s, 2x v1's per frame; measured 92% task success over 80 seeds at 1 s,
    # against 70% at v1's speed and 89% at 0.3-0.45). VAE: 8x spatial (a block is 4-5 latent pixels wide instead of
    # 2), base width 16 (v1: 8), 2000 steps on 400 clips. Width 24 and 128 px crops were measured 12 s a step on a
    # shared core (2026-12-02, load 7 on 2 cores) against ~1.5 s alone: steps, not width, are the scarce thing.
    # After 2000 steps on 5-frame windows the held-out PSNR had flattened at 24.7 dB on 17-frame clips; steps
    # 2000-4000 train on 9-frame windows (two latent frames past the first: the cached causal path that whole clips
    # use and 5-frame windows barely exercise): 27.7 dB at 3500. Steps 4000-6000: whole 17-frame clips.
    # Stage order: the understanding pathway and the vision tower never see the VAE, so they train before it (their
    # starting checkpoint holds an untrained VAE of the design, replaced when the VAE stage ends) and the VAE, the
    # longest stage, can run beside them; the latents and the generator need the trained VAE.
    "v2": PicoDesign("v2", WorldDesign(px_per_m=560.0, duration_s=1.0, fps=16, gripper_speed=(0.25, 0.35)),
                     VaeDesign(base_dim=16, z_dim=48, spatial=8, steps=6000, batch_size=4, frames=5, crop=96,
                               longer=((2000, 9), (4000, 17)), lr=1e-3, train_clips=(320, 80),
                               heldout_clips=(16, 4), eval_every=250),
                     ("world", "tokenizer", "audio", "assemble", "reasoner", "vision", "vae", "latents", "generator",
                      "ship"),
                     native={**NATIVE, "num_frames": 17, "action_chunk_size": 16},
                     reasoner_steps=3000, vision_steps=2000, generator_steps=2600, generator_continue=(3350,)),
}
# The design of the embedded model in src/cosmos3/weights/pico (its cosmos3_defaults.json is this design's native).
SHIPPED_DESIGN = "v2"
