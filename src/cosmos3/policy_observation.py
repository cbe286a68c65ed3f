"""What a robot sends the policy server, and how it becomes the model's input: the observation layouts (camera keys
and sizes, state vectors, the prompt key), the check of each observation against its layout (ObservationError names
the bad key), and the composition of several cameras into the one image the model sees (the same pixels at train time:
train/data.py composes its DROID clips with `compose_concat_view`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ObservationError(ValueError):
    """A malformed observation; the message names the key."""


@dataclass(frozen=True)
class ObservationLayout:
    """What a robot sends: camera images (the primary first), optional or required state vectors, a prompt.

    `camera_size` (H, W): the size every camera image must have (None: any, at least 16x16). `compose`: "single" (the
    primary image only) or "concat_view" (primary on top at (H, W), the others at half size side by side below:
    [3H/2, W]). `state` lists (key, width); `flip_gripper`: the action channel returned as 1 - g."""

    name: str
    embodiment: str
    image_keys: tuple[str, ...]
    camera_size: tuple[int, int] | None
    compose: str = "single"
    state: tuple[tuple[str, int], ...] = ()
    state_required: bool = False
    prompt_key: str = "prompt"
    flip_gripper: int | None = None
    flip_state_gripper: int | None = None  # the state channel given to the model as 1 - g

    @property
    def image_size(self) -> tuple[int, int] | None:
        """The composed image the model sees (H, W)."""
        if self.camera_size is None:
            return None
        h, w = self.camera_size
        return (h + h // 2, w) if self.compose == "concat_view" else (h, w)


LAYOUTS: dict[str, ObservationLayout] = {
    # pico and any single-camera checkpoint: the world's 320x192 frames, an optional state vector (any width; pico
    # takes no state, it is checked and ignored).
    "generic": ObservationLayout("generic", "umi", ("observation/image",), (192, 320),
                                 state=(("observation/state", -1),)),
    # Policy-DROID: three 360x640 cameras composed into 540x640 as the release's DROID dataset does
    # (cosmos-framework DROIDLeRobotDataset._load_concat_video: the wrist camera on top, exterior 1 and exterior 2
    # at half size below, left to right); joint (7) + gripper (1) state; the gripper is 1 - g on the way in (the
    # dataset flips the observed gripper of the state row) and on the way out.
    "droid": ObservationLayout("droid", "policy_droid",
                               ("observation/wrist_image_left", "observation/exterior_image_1_left",
                                "observation/exterior_image_2_left"), (360, 640), compose="concat_view",
                               state=(("observation/joint_position", 7), ("observation/gripper_position", 1)),
                               state_required=True, flip_gripper=7, flip_state_gripper=7),
}


def _image(obs: dict, key: str, size: tuple[int, int] | None, resize: bool) -> np.ndarray:
    if key not in obs:
        raise ObservationError(f"{key}: missing (this server expects images {'x'.join(map(str, size)) if size else ''}"
                               f" uint8 HxWx3)")
    img = obs[key]
    if not isinstance(img, np.ndarray):
        raise ObservationError(f"{key}: expected a numpy uint8 image, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ObservationError(f"{key}: expected dtype uint8, got {img.dtype}")
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)  # CHW -> HWC
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ObservationError(f"{key}: expected shape [H, W, 3] (or [3, H, W]), got {list(img.shape)}")
    if size is not None and tuple(img.shape[:2]) != tuple(size):
        if not resize:
            raise ObservationError(f"{key}: expected an image of {size[0]}x{size[1]} (HxW), got "
                                   f"{img.shape[0]}x{img.shape[1]}")
        from PIL import Image

        img = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))
    if img.shape[0] < 16 or img.shape[1] < 16:
        raise ObservationError(f"{key}: {img.shape[0]}x{img.shape[1]} is too small (at least 16x16)")
    return np.ascontiguousarray(img)


def compose_concat_view(primary: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """[H, W, 3] primary on top of the other views at half size side by side: [H + H/2, W, 3]."""
    from PIL import Image

    H, W = primary.shape[:2]
    h, w = H // 2, W // max(1, len(others))
    row = [np.asarray(Image.fromarray(o).resize((w, h), Image.BILINEAR)) for o in others]
    bottom = np.concatenate(row, axis=1) if row else np.zeros((0, W, 3), np.uint8)
    if bottom.shape[1] < W:
        bottom = np.pad(bottom, ((0, 0), (0, W - bottom.shape[1]), (0, 0)))
    return np.concatenate([primary, bottom], axis=0)


@dataclass
class Observation:
    image: np.ndarray  # the composed [H, W, 3] uint8
    state: np.ndarray | None  # float32 [state_dim]
    prompt: str
    reset: bool = False


def parse_observation(obs, layout: ObservationLayout, resize: bool = False) -> Observation:
    """Check an observation against the layout and build the model's image; ObservationError names the bad key."""
    if not isinstance(obs, dict):
        raise ObservationError(f"observation: expected a dict, got {type(obs).__name__}")
    images = [_image(obs, key, layout.camera_size, resize) for key in layout.image_keys]
    if layout.camera_size is None and layout.compose == "concat_view":
        images = [images[0]] + [_image(obs, k, images[0].shape[:2], True) for k in layout.image_keys[1:]]
    image = compose_concat_view(images[0], images[1:]) if layout.compose == "concat_view" else images[0]
    parts = []
    for key, width in layout.state:
        if key not in obs:
            if layout.state_required:
                raise ObservationError(f"{key}: missing (expected {width} float values)")
            continue
        value = obs[key]
        if isinstance(value, (list, tuple)):
            value = np.asarray(value)
        if not isinstance(value, (np.ndarray, np.generic, float, int)) or isinstance(value, bool):
            raise ObservationError(f"{key}: expected a numeric array, got {type(value).__name__}")
        value = np.asarray(value)
        if value.dtype.kind not in "fiu":
            raise ObservationError(f"{key}: expected a numeric dtype, got {value.dtype}")
        value = value.reshape(-1).astype(np.float32)
        if width > 0 and value.shape[0] != width:
            raise ObservationError(f"{key}: expected {width} values, got shape {list(np.shape(obs[key]))}")
        if not np.all(np.isfinite(value)):
            raise ObservationError(f"{key}: holds NaN or infinite values")
        parts.append(value)
    prompt = obs.get(layout.prompt_key, "")
    if isinstance(prompt, bytes):
        prompt = prompt.decode("utf-8", "replace")
    if isinstance(prompt, np.ndarray) and prompt.dtype.kind in "US":
        prompt = str(prompt.reshape(-1)[0]) if prompt.size else ""
    if not isinstance(prompt, str):
        raise ObservationError(f"{layout.prompt_key}: expected a string, got {type(prompt).__name__}")
    state = np.concatenate(parts) if parts else None
    if state is not None and layout.flip_state_gripper is not None and state.shape[0] > layout.flip_state_gripper:
        state[layout.flip_state_gripper] = 1.0 - state[layout.flip_state_gripper]
    return Observation(image, state, prompt, bool(obs.get("reset", False)))
