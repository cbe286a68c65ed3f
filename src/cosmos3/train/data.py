"""Training data: sources of samples, the VAE encoder, precomputed latents, and deterministic sharded sampling.

Sources (all indexable, `len(source)` items):
    LeRobotSource     LeRobot v3 windows (cosmos3.lerobot.LeRobotDataset): chunk + 1 frames -> vision latents,
                      chunk actions (raw dims, padded later), the task as the release's JSON action caption; or,
                      for Policy-DROID, three cameras composed as concat_view on the Generator's canvas, joint
                      actions, the robot state and the caption the Generator gives it (action_modes.action_caption)
    VideoFolderSource MP4 files + captions (captions.jsonl lines {"video": "a.mp4", "caption": "..."}, or
                      captions.json {"a.mp4": "..."}, or a sidecar a.txt per video)
    LatentSource      a folder written by `precompute_latents` (index.jsonl + one safetensors file per sample)
    ChatSource        chat JSONL for the reasoner: one {"messages": [...]} per line (media URLs relative to the file)

A generation sample is a `GenItem` (normalized latents [C, T', H', W'], optional actions [n, raw] and sound
[Cs, Ts], the caption and the pixel-space metadata the prompt templates need).

`ShardedSampler` turns a dataset of n items into one endless, seeded stream of indices (a fresh permutation per
epoch); step s uses stream entries [s B, (s + 1) B) and process r of W takes every W-th of them. The stream does
not depend on W, so 1 or N processes see the same global batches, and its position (one integer) is all a resume
needs.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..actions import (ACTION_DIM, ACTION_STATS_FILE, ActionStats, get_embodiment,
                       load_stats_file, normalize, save_stats_file)
from ..actions.embodiments import STATE_DIMS, VIEW_DESCRIPTIONS, check_caption_format
from ..fileio import atomic_write

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


@dataclass
class GenItem:
    """One generation sample before noising."""

    vision: torch.Tensor  # [C, T', H', W'] normalized latents (float32)
    prompt: str  # the caption (plain text, or a JSON object as a string)
    fps: float
    num_frames: int  # pixel frames (for the duration template)
    height: int  # pixel size (for the resolution template)
    width: int
    actions: torch.Tensor | None = None  # [n, raw_dim] float32, not padded
    domain_id: int | None = None
    sound: torch.Tensor | None = None  # [Cs, Ts]
    state: torch.Tensor | None = None  # [state_dim] raw robot state: a clean action token at video frame 0
    templated: bool = True  # the prompt templates (duration / fps / resolution) still have to be added

    @property
    def raw_action_dim(self) -> int | None:
        return None if self.actions is None else int(self.actions.shape[1])

    def padded_actions(self, width: int = ACTION_DIM) -> torch.Tensor | None:
        """[n, width]: raw actions zero-padded to the network's action width."""
        if self.actions is None:
            return None
        out = torch.zeros(self.actions.shape[0], width)
        out[:, :self.actions.shape[1]] = self.actions
        return out


def action_caption(task: str, viewpoint: str | None, num_frames: int, fps: float) -> str:
    """The caption an action sample carries: the instruction part of the release's JSON action caption
    (`action_modes.action_instruction`); duration / fps / resolution / aspect keys are added by the prompt templates
    (`sequence.prompt_text`) exactly as `action_modes.action_caption` adds them at inference."""
    from ..action_modes import action_instruction

    return action_instruction(task, viewpoint, num_frames, fps)


# ------------------------------------------------------------------------------------------------ encoding


def frames_to_pixels(frames: torch.Tensor, height: int | None, width: int | None) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> [1, 3, T, h, w] in [-1, 1], resized (bilinear, antialiased) when a size is given."""
    x = frames.permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    if height is not None and width is not None and tuple(x.shape[-2:]) != (height, width):
        x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                                            antialias=True)
    return (x / 127.5 - 1.0).clamp(-1, 1).permute(1, 0, 2, 3)[None]


class Encoder:
    """The checkpoint's video VAE, loaded on first use, with an optional in-memory cache of latents by key (sources
    then also keep their decoded items, so each window is read and encoded once per run)."""

    def __init__(self, checkpoint: str | os.PathLike, device: torch.device, cache: bool = True):
        self.folder = Path(checkpoint) / "vae"
        self.device = device
        self.cache: dict[str, torch.Tensor] | None = {} if cache else None
        self._vae = None
        self._sound = None

    @property
    def vae(self):
        if self._vae is None:
            from ..vae import VideoVAE

            self._vae = VideoVAE.from_pretrained(self.folder, self.device, torch.float32)
        return self._vae

    def encode(self, key: str, frames: torch.Tensor, height: int | None, width: int | None) -> torch.Tensor:
        """uint8 frames [T, H, W, 3] (T = 1 or 4k + 1) -> normalized latents [C, T', H', W'] on the CPU."""
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        T = frames.shape[0]
        if T != 1 and (T - 1) % 4:
            raise ValueError(f"{key}: {T} frames; the video VAE takes 1 or 4k + 1 frames")
        pixels = frames_to_pixels(frames, height, width)
        spatial = self.vae.spatial
        if pixels.shape[-1] % spatial or pixels.shape[-2] % spatial:
            raise ValueError(f"{key}: frame size {tuple(pixels.shape[-2:])} is not a multiple of {spatial}; set "
                             f"data.height / data.width")
        return self.encode_pixels(key, pixels)

    def encode_pixels(self, key: str, pixels: torch.Tensor) -> torch.Tensor:
        """[1, 3, T, H, W] in [-1, 1] -> normalized latents [C, T', H', W'] on the CPU (cached by key)."""
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        latents = self.vae.encode(pixels).cpu()
        if self.cache is not None:
            self.cache[key] = latents
        return latents

    def encode_sound(self, key: str, waveform: torch.Tensor, rate: int, num_frames: int, fps: float) -> torch.Tensor:
        """The sound of a clip [channels, N] at `rate` -> latents [Cs, Ts] covering its num_frames / fps seconds
        (cut or zero-padded to that length; mono is duplicated to stereo)."""
        key = "sound:" + key
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        if self._sound is None:
            from ..vae import SoundCodec

            folder = self.folder.parent / "sound_tokenizer"
            if not (folder / "config.json").is_file():
                raise ValueError(f"{folder}: data.sound needs the checkpoint's audio tokenizer")
            self._sound = SoundCodec.from_pretrained(folder, self.device, torch.float32)
        codec = self._sound
        if rate != codec.sample_rate:
            raise ValueError(f"{key}: sound at {rate} Hz; the audio tokenizer takes {codec.sample_rate} Hz")
        samples = int(num_frames / fps * rate)
        wave = waveform.float()[:2]
        if wave.shape[0] == 1:
            wave = wave.expand(2, -1)
        wave = torch.nn.functional.pad(wave[:, :samples], (0, max(0, samples - wave.shape[1])))
        latents = codec.encode(wave)[:, :codec.latent_count(num_frames, fps)]
        if self.cache is not None:
            self.cache[key] = latents
        return latents


# ------------------------------------------------------------------------------------------------ sources

VIEW_ROLES = ("wrist", "exterior_1", "exterior_2")  # concat_view: top, bottom left, bottom right


def concat_view_cameras(dataset, views: dict[str, str], missing: str = "refuse") -> list[str]:
    """The dataset cameras of `views` ({role: camera key}) in VIEW_ROLES order. Cameras without videos are refused
    by name, or with missing="duplicate" replaced by the first present one (with a warning naming them)."""
    absent = [r for r in VIEW_ROLES if views[r] not in dataset.available_cameras]
    if not absent:
        return [views[r] for r in VIEW_ROLES]
    names = ", ".join(f"{views[r]} ({r})" for r in absent)
    present = [views[r] for r in VIEW_ROLES if r not in absent]
    if missing != "duplicate" or not present:
        hint = ('; set data.missing_views = "duplicate" to fill them with a copy of a present camera' if present
                else "")
        raise ValueError(f"{dataset.root}: data.concat_view needs cameras without videos in this dataset: {names} "
                         f"(cameras with videos: {dataset.available_cameras}){hint}")
    warnings.warn(f"{dataset.root}: cameras without videos: {names}; data.missing_views = \"duplicate\" shows "
                  f"{present[0]} in their place (the model sees that camera more than once)", stacklevel=2)
    return [views[r] if r not in absent else present[0] for r in VIEW_ROLES]


def compose_concat_view(wrist: torch.Tensor, exterior_1: torch.Tensor, exterior_2: torch.Tensor) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] of the three cameras -> [T, H + H/2, W, 3]: the wrist on top, the exteriors at half
    size side by side below, frame by frame with the policy server's composition (the same pixels at serve time)."""
    from ..policy_observation import compose_concat_view as compose

    frames = [compose(w.numpy(), [a.numpy(), b.numpy()]) for w, a, b in zip(wrist, exterior_1, exterior_2)]
    return torch.from_numpy(np.stack(frames))


def first_instruction(task: str) -> str:
    """DROID's multi-annotation tasks ("a | b | c", empty fields allowed): the first non-empty one (the release
    draws one at random; a fixed one keeps cached samples deterministic)."""
    return next((t.strip() for t in task.split(" | ") if t.strip()), "")


class LeRobotSource:
    """Windows of a LeRobot v3 dataset -> GenItem with actions (see cosmos3.lerobot)."""

    def __init__(self, path: str | os.PathLike, encoder: Encoder, *, camera: str | None = None, chunk_size: int = 16,
                 stride: int = 16, height: int | None = None, width: int | None = None,
                 embodiment: str | None = None, normalize_actions: bool = False, sound: bool = False,
                 action_columns: list[str] | None = None, state_columns: list[str] | None = None,
                 flip_gripper: bool = False, concat_view: dict[str, str] | None = None,
                 missing_views: str = "refuse", resolution: str | int | None = "480p",
                 caption_format: str | None = None):
        from ..action_modes import tier_of
        from ..lerobot import LeRobotDataset

        if concat_view and (height is not None or width is not None):
            raise ValueError("data.height / data.width: concat_view samples are placed on the Generator's canvas of "
                             "data.resolution (the pixels and size a served request gets); drop them")
        # concat_view: the composed frames go on this canvas tier, as the Generator places a request's image
        try:
            self.tier = tier_of(resolution)
        except ValueError as e:
            raise ValueError(f"data.{e}") from None
        self.caption_format = check_caption_format(caption_format, "data.caption_format")

        self.dataset = LeRobotDataset(path, camera=camera, chunk_size=chunk_size, stride=stride, sound=sound,
                                      action_columns=action_columns, state_columns=state_columns)
        # concat_view: the cameras read for [wrist, exterior_1, exterior_2]; the wrist's is the dataset's own
        self.views = concat_view_cameras(self.dataset, concat_view, missing_views) if concat_view else None
        if self.views:
            self.dataset.camera = self.views[0]
        self.flip_gripper = flip_gripper
        self.sound = sound
        self.encoder, self.height, self.width = encoder, height, width
        name = embodiment if embodiment is not None else (self.dataset.domain_name or self.dataset.domain_id)
        if name is None:
            raise ValueError(f"{path}: the dataset does not name its embodiment; set data.embodiment")
        self.embodiment = get_embodiment(name)
        if self.dataset.action_dim != self.embodiment.raw_dim:
            raise ValueError(f"{path}: {self.dataset.action_dim}D actions, but embodiment {self.embodiment.name!r} "
                             f"has {self.embodiment.raw_dim}D actions; set data.embodiment (or data.action_columns)")
        takes = STATE_DIMS.get(self.embodiment.name)
        if takes is not None and self.dataset.state_dim != takes:
            raise ValueError(f"{path}: embodiment {self.embodiment.name!r} takes a {takes}D robot state, data."
                             f"state_columns give {self.dataset.state_dim or 'none'}")
        if takes is None and self.dataset.state_dim is not None:
            raise ValueError(f"{path}: embodiment {self.embodiment.name!r} takes no robot state; drop "
                             f"data.state_columns")
        if normalize_actions and self.dataset.state_dim is not None:
            raise ValueError(f"{path}: data.normalize_actions with data.state_columns: the state is given raw at "
                             f"inference, so its embodiment trains on raw actions")
        self._items: dict[int, GenItem] = {}
        # {embodiment: stats} the actions are normalized with, empty for raw actions; what the trained checkpoint's
        # action_stats.json records (the space its actions were learnt in)
        self.action_stats: dict[str, ActionStats] = {}
        if normalize_actions:
            stats = dataset_action_stats(self.dataset.root)
            if stats is None:
                raise ValueError(f"{Path(path) / 'meta' / 'stats.json'}: missing (or without \"action\"); needed by "
                                 f"data.normalize_actions")
            self.action_stats = {self.embodiment.name: stats}
        self.embodiments = {self.embodiment.name}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> GenItem:
        if self.encoder.cache is not None and i in self._items:  # decoded and encoded once
            return self._items[i]
        w = self.dataset[i]
        frames = self.frames(i, w)  # uint8 [chunk + 1, H, W, 3]
        T, H, W = frames.shape[:3]
        height, width = (self.height or H), (self.width or W)
        key = f"lerobot:{w['episode_index']}:{w['frame_index']}"
        if self.views:  # the Generator's canvas; its latents cropped to the content, as a request's are
            canvas = self.canvas(frames)
            height, width = canvas.height, canvas.width  # the size the caption states
            encoded = self.encoder.encode_pixels(key, canvas.pixels)
            latents = canvas.crop_latents(encoded, self.encoder.vae.spatial)
        else:
            latents = self.encoder.encode(key, frames, self.height, self.width)
        actions = w["actions"].float()
        state = None if w.get("state") is None else w["state"].float()
        if self.flip_gripper:  # stored as 1 - g (the release's IS_GRIPPER_ACTION_FLIPPED datasets)
            actions[:, -1] = 1.0 - actions[:, -1]
            if state is not None:
                state[-1] = 1.0 - state[-1]
        if self.action_stats:
            actions = torch.from_numpy(normalize(actions.numpy(), self.action_stats[self.embodiment.name])).float()
        variant = self.embodiment.name in VIEW_DESCRIPTIONS
        if variant:  # the whole caption the Generator gives this variant (action_modes.action_caption), templates in
            from ..action_modes import action_caption as full_caption

            caption = full_caption(first_instruction(w["task"]), self.embodiment, T, w["fps"], height, width,
                                   self.caption_format)
        else:
            caption = action_caption(w["task"], self.embodiment.viewpoint, T, w["fps"])
        item = GenItem(latents, caption, float(w["fps"]), T, height, width, actions, self.embodiment.domain_id,
                       state=state, templated=not variant)
        if self.sound:
            if w.get("sound") is None:
                raise ValueError(f"{self.dataset.root}: data.sound is set but episode {w['episode_index']} has no "
                                 f"sound track")
            item.sound = self.encoder.encode_sound(key, w["sound"], 48000, T, float(w["fps"]))
        if self.encoder.cache is not None:
            self._items[i] = item
        return item


    def canvas(self, frames: torch.Tensor):
        """Composed uint8 frames [T, H, W, 3] -> the Generator's canvas of data.resolution
        (`action_modes.fit_canvas`: the same placement a served request's composed image gets)."""
        from PIL import Image

        from ..action_modes import fit_canvas

        return fit_canvas([Image.fromarray(f) for f in frames.numpy()], frames.shape[0], self.tier)

    def frames(self, i: int, window: dict | None = None) -> torch.Tensor:
        """Window i's frames as the model sees them: uint8 [chunk + 1, H, W, 3] (concat_view: [.., 3H/2, W, 3])."""
        w = self.dataset[i] if window is None else window
        if not self.views:
            return w["frames"]
        read = {self.views[0]: w["frames"]}
        for camera in self.views[1:]:
            if camera not in read:
                read[camera] = self.dataset.read_camera(i, camera)
        return compose_concat_view(*(read[c] for c in self.views))


def dataset_action_stats(root: str | os.PathLike) -> ActionStats | None:
    """A LeRobot dataset's raw action statistics (meta/stats.json, "action"), or None if it has none."""
    stats_file = Path(root) / "meta" / "stats.json"
    if not stats_file.is_file():
        return None
    entry = json.loads(stats_file.read_text()).get("action")
    return None if entry is None else ActionStats.from_dict(entry, f"{stats_file}: action")


def read_captions(folder: Path) -> dict[str, str]:
    """{video file name: caption} from captions.jsonl, captions.json, or sidecar .txt files."""
    captions: dict[str, str] = {}
    jsonl, js = folder / "captions.jsonl", folder / "captions.json"
    if jsonl.is_file():
        for n, line in enumerate(jsonl.read_text().splitlines(), 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            name = rec.get("video") or rec.get("file") or rec.get("path")
            text = rec.get("caption") or rec.get("prompt") or rec.get("text")
            if not isinstance(name, str) or not isinstance(text, str):
                raise ValueError(f"{jsonl}:{n}: expected {{\"video\": file, \"caption\": text}}")
            captions[name] = text
    elif js.is_file():
        data = json.loads(js.read_text())
        if isinstance(data, dict):
            captions = {str(k): str(v) for k, v in data.items()}
        else:
            captions = {str(r.get("video") or r.get("file")): str(r.get("caption") or r.get("prompt")) for r in data}
    for video in folder.iterdir():
        sidecar = video.with_suffix(".txt")
        if video.suffix.lower() in VIDEO_SUFFIXES and video.name not in captions and sidecar.is_file():
            captions[video.name] = sidecar.read_text().strip()
    return captions


class VideoFolderSource:
    """A folder of videos with captions -> GenItem (the first `num_frames` frames of each video)."""

    def __init__(self, path: str | os.PathLike, encoder: Encoder, *, num_frames: int = 17, height: int | None = None,
                 width: int | None = None, sound: bool = False):
        self.folder = Path(path)
        if not self.folder.is_dir():
            raise ValueError(f"{self.folder}: no such video folder")
        captions = read_captions(self.folder)
        self.videos = sorted(v for v in captions if (self.folder / v).is_file())
        missing = sorted(set(captions) - set(self.videos))
        if missing:
            raise ValueError(f"{self.folder}: captioned videos not found: {missing[:5]}")
        if not self.videos:
            raise ValueError(f"{self.folder}: no captioned videos (captions.jsonl, captions.json or .txt sidecars)")
        self.captions = captions
        self.encoder, self.num_frames, self.height, self.width = encoder, num_frames, height, width
        self._items: dict[int, GenItem] = {}
        self.sound = sound

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> GenItem:
        from ..media import read_video

        if self.encoder.cache is not None and i in self._items:
            return self._items[i]
        name = self.videos[i]
        frames, fps = read_video(self.folder / name, max_frames=self.num_frames)
        if frames.shape[0] < self.num_frames:
            raise ValueError(f"{self.folder / name}: {frames.shape[0]} frames, data.num_frames is {self.num_frames}")
        H, W = frames.shape[1:3]
        latents = self.encoder.encode(f"video:{name}", frames, self.height, self.width)
        item = GenItem(latents, self.captions[name], float(fps), self.num_frames, self.height or H, self.width or W)
        if self.sound:
            from ..media import read_audio

            wave, rate = read_audio(self.folder / name)
            item.sound = self.encoder.encode_sound(f"video:{name}", wave, rate, self.num_frames, float(fps))
        if self.encoder.cache is not None:
            self._items[i] = item
        return item


INDEX_NAME = "index.jsonl"


class LatentSource:
    """Precomputed samples: <folder>/index.jsonl (one JSON line of metadata per sample) + <file>.safetensors with
    "vision" [C, T', H', W'] and optionally "actions" [n, raw] and "sound" [Cs, Ts]."""

    def __init__(self, path: str | os.PathLike, normalize_actions: bool = False):
        self.folder = Path(path)
        index = self.folder / INDEX_NAME
        if not index.is_file():
            raise ValueError(f"{index}: missing; write it with `python -m cosmos3.train precompute`")
        self.records = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        self.embodiments = {get_embodiment(r["domain_id"]).name for r in self.records
                            if r.get("domain_id") is not None}
        self.action_stats: dict[str, ActionStats] = {}
        if normalize_actions:  # the stored actions are raw; <folder>/action_stats.json has their statistics
            stats_file = self.folder / ACTION_STATS_FILE
            stats = load_stats_file(stats_file)
            missing = sorted(self.embodiments - set(stats))
            if missing:
                raise ValueError(f"{stats_file}: no statistics for {', '.join(missing)}; needed by "
                                 f"data.normalize_actions (precompute writes them from the dataset's meta/stats.json)")
            self.action_stats = {name: stats[name] for name in sorted(self.embodiments)}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> GenItem:
        rec = self.records[i]
        tensors = load_file(str(self.folder / rec["file"]))
        actions = tensors.get("actions")
        if actions is not None and self.action_stats:
            stats = self.action_stats[get_embodiment(rec["domain_id"]).name]
            actions = torch.from_numpy(normalize(actions.numpy(), stats)).float()
        return GenItem(tensors["vision"], rec["prompt"], float(rec["fps"]), int(rec["num_frames"]),
                       int(rec["height"]), int(rec["width"]), actions, rec.get("domain_id"), tensors.get("sound"))


def precompute_latents(source, out_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Encode every item of a source once and write a LatentSource folder (index.jsonl written last, atomically)."""
    from tqdm.auto import tqdm

    if getattr(source, "action_stats", None):
        raise ValueError("precompute stores raw actions (and their statistics, for data.normalize_actions at "
                         "training time); give it a source that does not normalize")
    if getattr(source, "views", None) or getattr(getattr(source, "dataset", None), "state_dim", None):
        raise ValueError("precompute keeps neither composed concat_view canvases nor the robot state (policy_droid); "
                         "train from the LeRobot dataset directly")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in tqdm(range(len(source)), desc="encoding", unit="sample", disable=not progress):
        item: GenItem = source[i]
        tensors = {"vision": item.vision.contiguous()}
        if item.actions is not None:
            tensors["actions"] = item.actions.contiguous()
        if item.sound is not None:
            tensors["sound"] = item.sound.contiguous()
        name = f"{i:08d}.safetensors"
        save_file(tensors, str(out / name))
        lines.append(json.dumps({"file": name, "prompt": item.prompt, "fps": item.fps, "num_frames": item.num_frames,
                                 "height": item.height, "width": item.width, "domain_id": item.domain_id}))
    raw_stats = dataset_action_stats(source.dataset.root) if isinstance(source, LeRobotSource) else None
    if raw_stats is not None:  # so a training run can normalize them (data.normalize_actions)
        save_stats_file(out / ACTION_STATS_FILE, {source.embodiment.name: raw_stats})
    atomic_write(out / INDEX_NAME, "\n".join(lines) + "\n")
    return out


# ------------------------------------------------------------------------------------------------ sampling


class ShardedSampler:
    """A seeded, endless stream of dataset indices shared by all processes; see the module docstring."""

    def __init__(self, size: int, seed: int, shuffle: bool = True):
        if size < 1:
            raise ValueError("the dataset is empty")
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.position = 0  # stream entries consumed so far (by all processes together)
        self._epoch, self._order = -1, np.arange(size)

    def _at(self, k: int) -> int:
        epoch, offset = divmod(k, self.size)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
            self._epoch = epoch
        return int(self._order[offset])

    def next_batch(self, batch_size: int, rank: int = 0, world: int = 1) -> list[tuple[int, int]]:
        """This process's share of the next global batch: [(stream position, dataset index)], then advance.
        The stream position identifies a sample's draw (noise, sigma, mode) independently of the process count."""
        if batch_size % world:
            raise ValueError(f"run.batch_size {batch_size} is not a multiple of the process count {world}")
        start = self.position
        self.position += batch_size
        return [(k, self._at(k)) for k in range(start + rank, start + batch_size, world)]

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed, "size": self.size, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        if state.get("size") != self.size or state.get("seed") != self.seed:
            raise ValueError(f"data position was saved for a dataset of {state.get('size')} items with seed "
                             f"{state.get('seed')}; this one has {self.size} items and seed {self.seed}")
        self.position = int(state["position"])


def sample_generator(seed: int, position: int) -> torch.Generator:
    """The generator of one sample's random draws, from the run seed and its stream position."""
    mixed = np.random.SeedSequence([seed, position]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(mixed[0] % (2**63)))
