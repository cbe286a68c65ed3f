"""A small reader for LeRobot v3.0 datasets: windows of frames and actions, as the trainer wants them.

`LeRobotDataset(root, camera=None, chunk_size=16)[i]` is window i: frames [chunk + 1, H, W, 3] uint8 and the
chunk actions between them (action t moves frame t to frame t+1, DESIGN 2.8), plus fps and the task text.

It reads the world's datasets (cosmos3.world.export) and real ones such as the DROID example of the release:
- meta/info.json gives fps, the features, and the data / video path templates (both the `episode_chunk` /
  `episode_file` and the `chunk_index` / `file_index` spellings);
- meta/episodes/*.parquet gives each episode's rows and, when several episodes share a video file, the file and
  its from/to timestamps (a dataset without those columns has one episode per file at time 0);
- actions come from the `action` column when there is one; a DROID-style dataset without it (only
  observation.state.cartesian_position = xyz + extrinsic xyz Euler angles, and a gripper position) gets the
  release's 10D actions computed from consecutive states: translation(3) + rot6d(6) in the frame of state t,
  then the gripper position at t+1.
A camera listed in info.json whose video file is missing is reported by name: asking for it raises a ValueError,
and camera=None picks the first camera whose videos are all there.

Joint-space datasets (Policy-DROID) name their columns: `action_columns` are concatenated into the action row (e.g.
DROID's action.joint_position (7) + action.gripper_position (1)) and `state_columns` into the robot state of each
window's first frame (item["state"]). `read_camera(i, camera)` reads window i from another camera.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from .actions.poses import euler_xyz_to_matrix, relative_pose_actions
from .media import read_audio, read_video

KNOWN_DOMAINS = {"umi": 6, "camera_pose": 2, "droid_lerobot": 8}


def _read_all(folder: Path, columns: list[str] | None = None) -> pa.Table:
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise ValueError(f"no parquet files under {folder}")
    tables = [pq.read_table(f, columns=columns) for f in files]
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def _matrix(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A list<float> column as a float64 [N, D] array."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        n = len(arr)
        flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
        return flat.reshape(n, -1) if n else flat.reshape(0, 0)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)[:, None]


class LeRobotDataset:
    """Windows of a LeRobot v3 dataset: item i -> dict(frames, actions, fps, task, ...).

    root: the dataset folder (with meta/info.json). camera: a video feature name from info.json, or None for the
    first camera whose video files exist. chunk_size: actions per window (frames per window = chunk_size + 1).
    stride: step between window starts. sound=True adds the window's sound [2, N] (float32) when the video file
    has an audio track. action_columns: columns concatenated into the action row (None: `action`, or actions derived
    from DROID's cartesian state). state_columns: columns concatenated into item["state"], the state at the
    window's first frame (None: no state).
    """

    def __init__(self, root: str | Path, camera: str | None = None, chunk_size: int = 16, stride: int = 1,
                 sound: bool = False, action_columns: list[str] | None = None,
                 state_columns: list[str] | None = None):
        self.root = Path(root)
        if chunk_size < 1 or stride < 1:
            raise ValueError(f"chunk_size and stride must be >= 1, got {chunk_size}, {stride}")
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            if (self.root / "world.json").is_file():
                subs = sorted(p.name for p in self.root.iterdir() if (p / "meta" / "info.json").is_file())
                raise ValueError(f"{self.root} holds several LeRobot datasets ({', '.join(subs)}); "
                                 f"open one of them, e.g. {self.root / subs[0]}" if subs else
                                 f"{self.root} holds no LeRobot dataset")
            raise ValueError(f"{self.root} is not a LeRobot dataset: {info_path} is missing")
        self.info = json.loads(info_path.read_text())
        version = str(self.info.get("codebase_version", ""))
        if not version.startswith("v3"):
            raise ValueError(f"{self.root}: LeRobot codebase_version {version!r} is not supported (need v3.x)")
        self.fps = float(self.info["fps"])
        self.chunk_size, self.stride, self.with_sound = chunk_size, stride, sound
        features = self.info.get("features", {})
        self.cameras = [k for k, f in features.items() if f.get("dtype") == "video"]
        if not self.cameras:
            raise ValueError(f"{self.root}: meta/info.json lists no video feature")

        self.episodes = _read_all(self.root / "meta" / "episodes").to_pylist()
        self.episodes.sort(key=lambda e: e["episode_index"])
        self.missing_cameras = self._find_missing()
        self.camera = self.check_camera(camera)

        cosmos = self.info.get("cosmos3", {})
        self.domain_name = cosmos.get("domain_name")
        self._load_rows(list(action_columns or []), list(state_columns or []))
        self.domain_id = cosmos.get("domain_id", KNOWN_DOMAINS.get(self.domain_name))
        tasks = pq.read_table(self.root / "meta" / "tasks.parquet").to_pydict()
        text_col = "task" if "task" in tasks else next(k for k, v in tasks.items() if v and isinstance(v[0], str))
        self.tasks = dict(zip(tasks["task_index"], tasks[text_col]))

        self.windows: list[tuple[int, int]] = []  # (episode position, first frame)
        for e, ep in enumerate(self.episodes):
            n = self._ep_rows[e][1] - self._ep_rows[e][0]
            self.windows.extend((e, s) for s in range(0, n - chunk_size, stride))

    # -- metadata -------------------------------------------------------------------------------------------------

    @property
    def available_cameras(self) -> list[str]:
        """Cameras whose video files are all there, in info.json order."""
        return [c for c in self.cameras if c not in self.missing_cameras]

    def check_camera(self, camera: str | None) -> str:
        """`camera` if its videos are there (None: the first camera whose videos are); else a ValueError naming it."""
        available = self.available_cameras
        if camera is None:
            if not available:
                raise ValueError(f"{self.root}: no camera has its video files; missing: "
                                 + "; ".join(f"{c} ({p})" for c, p in self.missing_cameras.items()))
            return available[0]
        if camera not in self.cameras:
            raise ValueError(f"{self.root}: unknown camera {camera!r}; meta/info.json lists {self.cameras}")
        if camera in self.missing_cameras:
            raise ValueError(f"{self.root}: camera {camera!r} is listed in meta/info.json but its video file "
                             f"{self.missing_cameras[camera]} is missing (cameras with videos: {available}; "
                             f"missing: {sorted(self.missing_cameras)})")
        return camera

    def _video_file(self, camera: str, ep: dict) -> Path:
        chunk = int(ep.get(f"videos/{camera}/chunk_index") or 0)
        file = int(ep.get(f"videos/{camera}/file_index") or 0)
        template = self.info.get("video_path", "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")
        return self.root / template.format(video_key=camera, episode_chunk=chunk, episode_file=file,
                                           chunk_index=chunk, file_index=file, episode_index=ep["episode_index"])

    def _find_missing(self) -> dict[str, str]:
        """camera -> first missing video file, for every camera with a missing file."""
        missing = {}
        for cam in self.cameras:
            for ep in self.episodes:
                path = self._video_file(cam, ep)
                if not path.is_file():
                    missing[cam] = str(path)
                    break
        return missing

    def _load_rows(self, action_columns: list[str], state_columns: list[str]) -> None:
        names = set(pq.read_schema(next(iter(sorted((self.root / "data").rglob("*.parquet"))))).names)
        base = ["index", "episode_index", "frame_index", "timestamp", "task_index"]
        droid = ["observation.state.cartesian_position", "observation.state.gripper_position"]
        absent = [c for c in action_columns + state_columns if c not in names]
        if absent:
            raise ValueError(f"{self.root}: no column {', '.join(map(repr, absent))} in data/*.parquet "
                             f"(columns: {sorted(names)})")
        state = None
        if action_columns:
            data = _read_all(self.root / "data", list(dict.fromkeys(base + action_columns + state_columns)))
            actions = np.concatenate([_matrix(data[c]) for c in action_columns], 1)
        elif "action" in names:
            data = _read_all(self.root / "data", list(dict.fromkeys(base + ["action"] + state_columns)))
            actions = _matrix(data["action"])
        elif all(c in names for c in droid):
            data = _read_all(self.root / "data", list(dict.fromkeys(base + droid + state_columns)))
            actions = None  # derived per episode below (it needs consecutive states)
            self.domain_name = self.domain_name or "droid_lerobot"
        else:
            raise ValueError(f"{self.root}: no 'action' column and no cartesian state to derive actions from "
                             f"(columns: {sorted(names)})")
        order = pc.sort_indices(data, sort_keys=[("index", "ascending")])
        data = data.take(order)
        self._index = data["index"].to_numpy()
        self._timestamp = np.asarray(data["timestamp"].to_numpy(), dtype=np.float64)
        self._task_index = data["task_index"].to_numpy()
        # the robot state of each frame ([N, S], columns concatenated), in index order like everything above
        self._state = (np.concatenate([_matrix(data[c]) for c in state_columns], 1).astype(np.float32)
                       if state_columns else None)
        self.state_dim = None if self._state is None else self._state.shape[1]
        grip = None
        if actions is None:
            state = _matrix(data[droid[0]])
            grip = _matrix(data[droid[1]])[:, 0]
            actions = np.zeros((len(state), 10))
        else:
            actions = actions[order.to_numpy()]
        self._ep_rows = []
        for ep in self.episodes:
            lo = int(np.searchsorted(self._index, ep["dataset_from_index"]))
            hi = int(np.searchsorted(self._index, ep["dataset_to_index"]))
            self._ep_rows.append((lo, hi))
            if state is not None:  # DROID-style: frame-to-frame pose deltas + gripper reached at t+1
                s = state[lo:hi]
                pose = relative_pose_actions(s[:, :3], euler_xyz_to_matrix(s[:, 3:6]))
                g = grip[lo:hi]
                actions[lo:hi] = np.concatenate([pose, np.concatenate([g[1:], g[-1:]])[:, None]], 1)
        self._actions = actions.astype(np.float32)
        self.action_dim = self._actions.shape[1]

    # -- items ------------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            i += len(self.windows)
        if not 0 <= i < len(self.windows):
            raise IndexError(f"window {i} out of range ({len(self.windows)} windows)")
        e, s = self.windows[i]
        ep = self.episodes[e]
        lo, _ = self._ep_rows[e]
        n = self.chunk_size + 1
        frames, path, t0 = self._read_frames(e, s, self.camera)
        out = {
            "frames": frames,
            "actions": torch.from_numpy(self._actions[lo + s: lo + s + self.chunk_size].copy()),
            "fps": self.fps,
            "task": self.tasks.get(int(self._task_index[lo + s]), ""),
            "episode_index": int(ep["episode_index"]),
            "frame_index": s,
            "domain_name": self.domain_name,
            "domain_id": self.domain_id,
        }
        if self._state is not None:
            out["state"] = torch.from_numpy(self._state[lo + s].copy())
        if self.with_sound:
            try:
                wave, rate = read_audio(path)  # float32 [channels, N]
            except ValueError:
                out["sound"] = None
            else:
                i0 = int(round(t0 * rate))
                out["sound"] = wave[:, i0:i0 + int(round(n / self.fps * rate))]
        return out

    def _read_frames(self, e: int, s: int, camera: str) -> tuple[torch.Tensor, Path, float]:
        """Frames [chunk + 1, H, W, 3] uint8 of episode position e from its frame s, with the file and start time."""
        ep = self.episodes[e]
        n = self.chunk_size + 1
        t0 = float(ep.get(f"videos/{camera}/from_timestamp") or 0.0) + self._timestamp[self._ep_rows[e][0] + s]
        path = self._video_file(camera, ep)
        try:
            frames, _ = read_video(path, max_frames=n, start=t0)
        except ValueError as err:
            raise ValueError(f"{path}: no frames at {t0:.3f} s ({err})") from None
        if frames.shape[0] != n:
            raise ValueError(f"{path}: expected {n} frames from {t0:.3f} s, the file has {frames.shape[0]}")
        return frames, path, t0

    def read_camera(self, i: int, camera: str) -> torch.Tensor:
        """Window i's frames [chunk + 1, H, W, 3] uint8 from another camera (checked as the constructor does)."""
        e, s = self.windows[i]
        return self._read_frames(e, s, self.check_camera(camera))[0]

    def __repr__(self) -> str:
        return (f"LeRobotDataset({str(self.root)!r}, camera={self.camera!r}, chunk_size={self.chunk_size}: "
                f"{len(self.episodes)} episodes, {len(self)} windows, {self.action_dim}D actions at {self.fps:g} fps)")


__all__ = ["LeRobotDataset"]
