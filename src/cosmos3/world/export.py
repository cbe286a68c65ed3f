"""Generate the synthetic world as LeRobot v3 datasets plus chat JSONL for the reasoner.

Layout of `generate_dataset(out_dir, ...)`:

    out_dir/
      world.json                  manifest: seed, counts, datasets, embodiments (no paths, no clock: reproducible)
      chat.jsonl                  reasoner training records; video URLs are relative to out_dir
      tabletop/                   LeRobot v3.0, gripper embodiment, domain umi (6), actions 10D
        meta/info.json  meta/tasks.parquet  meta/stats.json  meta/episodes/chunk-000/file-000.parquet
        data/chunk-000/file-000.parquet
        videos/observation.image.top/chunk-000/file-000.mp4 ...   (H.264 + FLAC sound track)
      camera/                     LeRobot v3.0, moving camera, domain camera_pose (2), actions 9D
        ... same layout, videos/observation.image.scene/...
      clips/                      extra reasoner clips: next-action prefixes and deliberately implausible videos

The two embodiments are separate datasets because a LeRobot dataset has one action shape. Episode i of the run
uses the seed SeedSequence([seed, i]); every file is written from those seeds alone, with deterministic encoders,
so the same arguments give byte-identical files (see video.py for the MP4 part).

Episodes are short (2 s) and one MP4 holds `episodes_per_video_file` of them (LeRobot v3 concatenates episodes and
records from/to timestamps in meta/episodes). The default of 1 makes every chat video URL a whole episode file.
"""

from __future__ import annotations

import json
import math
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .camera import CameraConfig, render_camera, simulate_camera
from .episode import TabletopConfig, simulate_tabletop
from .geometry import CAMERA_DOMAIN, GRIPPER_DOMAIN
from .render import render_tabletop
from .sound import SAMPLE_RATE, episode_sound, samples_per_frame
from .text import (camera_captions, camera_questions, next_action_question, plausibility_questions,
                   tabletop_captions, tabletop_questions)
from .video import Mp4Writer, write_mp4
from .violations import make_violation

FORMAT_VERSION = 1
DATA_PATH = "data/chunk-{episode_chunk:03d}/file-{episode_file:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{episode_chunk:03d}/file-{episode_file:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{episode_chunk:03d}/file-{episode_file:03d}.parquet"
VIDEO_KEYS = {"tabletop": "observation.image.top", "camera": "observation.image.scene"}
MAX_BLOCKS = 3


@dataclass
class WorldConfig:
    camera_fraction: float = 0.2  # share of episodes from the moving-camera embodiment (evenly spread)
    violation_fraction: float = 0.3  # tabletop episodes that also get an implausible clip (+ a plausibility Q/A)
    prefix_fraction: float = 0.5  # tabletop episodes that also get a prefix clip for a next-action question
    episodes_per_video_file: int = 1  # >1 concatenates episodes in one MP4, LeRobot v3 style
    episodes_per_data_file: int = 1000  # episodes per data / meta parquet file
    chunks_size: int = 1000  # files per chunk-XXX folder (LeRobot's default)
    tabletop: TabletopConfig = field(default_factory=TabletopConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode `index` of a run: independent streams, stable across worker counts and orders."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def plan_kinds(episodes: int, camera_fraction: float) -> list[str]:
    """Which embodiment each episode uses: camera episodes evenly spread, exactly round(n * fraction) of them."""
    return ["camera" if math.floor((i + 1) * camera_fraction) > math.floor(i * camera_fraction) else "tabletop"
            for i in range(episodes)]


# ---- one video file's worth of episodes (runs in a worker) -------------------------------------------------------


def _chunk_file(file_no: int, chunks_size: int) -> tuple[int, int]:
    return file_no // chunks_size, file_no % chunks_size


def _video_rel(kind: str, file_no: int, cfg: WorldConfig) -> str:
    chunk, f = _chunk_file(file_no, cfg.chunks_size)
    return f"{kind}/" + VIDEO_PATH.format(video_key=VIDEO_KEYS[kind], episode_chunk=chunk, episode_file=f)


def _video_part(url: str, start: float, end: float, whole_file: bool) -> dict:
    part = {"type": "video_url", "video_url": {"url": url}}
    if not whole_file:  # qwen-vl-utils style clip bounds, for files that hold several episodes
        part["video_start"], part["video_end"] = round(start, 6), round(end, 6)
    return part


def _chat(rec_id: str, kind: str, index: int, qtype: str, video: dict, question: str, answer: str) -> dict:
    return {"id": rec_id, "dataset": kind, "episode_index": index, "type": qtype,
            "messages": [{"role": "user", "content": [video, {"type": "text", "text": question}]},
                         {"role": "assistant", "content": answer}]}


def _make_file(job: dict) -> list[dict]:
    """Simulate, render, voice and describe the episodes of one video file; write the MP4 (and clips)."""
    cfg: WorldConfig = job["cfg"]
    out = Path(job["out_dir"])
    kind, file_no = job["kind"], job["file_no"]
    url = _video_rel(kind, file_no, cfg)
    whole = len(job["episodes"]) == 1
    results = []
    writer = None
    try:
        for local, seed in job["episodes"]:
            if kind == "tabletop":
                ep = simulate_tabletop(seed, cfg.tabletop)
                frames, sound = render_tabletop(ep), episode_sound(ep)
            else:
                ep = simulate_camera(seed, cfg.camera)
                frames = render_camera(ep)
                sound = np.zeros((2, ep.num_frames * samples_per_frame(ep.fps)), np.float32)  # a silent camera
            if writer is None:
                writer = Mp4Writer(out / url, frames.shape[2], frames.shape[1], ep.fps, SAMPLE_RATE)
            start = writer.add(frames, sound)
            end = start + ep.num_frames / ep.fps
            results.append(_describe(ep, frames, local, seed, kind, url, start, end, whole, cfg, out))
    finally:
        if writer is not None:
            writer.close()
    return results


def _describe(ep, frames, local, seed, kind, url, start, end, whole, cfg: WorldConfig, out: Path) -> dict:
    """Rows, episode metadata and chat records of one episode (writes its extra clips)."""
    rng = np.random.default_rng([seed, 1])  # text choices: a stream apart from the simulation's
    video = _video_part(url, start, end, whole)
    rid = f"{kind}/{local:06d}"
    meta = {"world/seed": seed, "world/policy": getattr(ep, "policy", None) or ep.motion}
    chat = []
    if kind == "tabletop":
        captions = tabletop_captions(ep)
        questions = tabletop_questions(ep, rng)
        meta.update({
            "world/success": bool(ep.success),
            "world/blocks": json.dumps([{"color": b.color, "shape": b.shape, "size_m": b.size} for b in ep.blocks]),
            "world/events": json.dumps([{"time_s": round(e.time, 6), "frame": e.frame, "a": e.a, "b": e.b,
                                         "impulse": round(e.impulse, 7), "x_m": round(e.x, 6),
                                         "y_m": round(e.y, 6)} for e in ep.events]),
            "world/goal": json.dumps(ep.goal),
            "world/violation": "",
        })
        if rng.random() < cfg.prefix_fraction:
            cut = next_action_question(ep, rng)
            if cut is not None:
                n, qa = cut
                clip = f"clips/{kind}-{local:06d}-prefix.mp4"
                write_mp4(out / clip, frames[:n], ep.fps)
                chat.append(_chat(f"{rid}/next_action", kind, local, qa.kind,
                                  _video_part(clip, 0.0, n / ep.fps, True), qa.question, qa.answer))
        if rng.random() < cfg.violation_fraction:
            v = make_violation(ep, rng)
            clip = f"clips/{kind}-{local:06d}-violation.mp4"
            write_mp4(out / clip, render_tabletop(ep, v.block_poses, v.visible), ep.fps)
            real, fake = plausibility_questions(ep, v)
            chat.append(_chat(f"{rid}/plausible", kind, local, real.kind, video, real.question, real.answer))
            chat.append(_chat(f"{rid}/implausible", kind, local, fake.kind,
                              _video_part(clip, 0.0, ep.num_frames / ep.fps, True), fake.question, fake.answer))
            meta["world/violation"] = json.dumps({"kind": v.kind, "block": v.block, "frame": v.frame,
                                                  "description": v.description, "clip": clip})
        rows = _tabletop_rows(ep)
    else:
        captions = camera_captions(ep)
        questions = camera_questions(ep)
        meta.update({"world/texture_seed": ep.texture_seed})
        rows = {"world.camera": ep.poses.astype(np.float32)}
    meta["world/captions"] = captions
    chat.insert(0, _chat(f"{rid}/caption_short", kind, local, "caption", video,
                         "Describe this video in one sentence.", captions[0]))
    chat.insert(1, _chat(f"{rid}/caption", kind, local, "caption", video,
                         "Describe what happens in this video in detail.", captions[1]))
    for k, qa in enumerate(questions):
        chat.append(_chat(f"{rid}/qa{k}", kind, local, qa.kind, video, qa.question, qa.answer))
    rows["action"] = ep.actions().astype(np.float32)
    rows["observation.state"] = ep.state().astype(np.float32)
    return {"kind": kind, "index": local, "length": ep.num_frames, "fps": ep.fps, "task": ep.instruction,
            "rows": rows, "meta": meta, "chat": chat, "video": (url, start, end)}


def _tabletop_rows(ep) -> dict:
    """Per-frame ground truth in pixels, for scoring videos: blocks (x, y, angle, present) x 3 slots; gripper."""
    T, n = ep.block_poses.shape[:2]
    ppm = ep.table.px_per_m
    blocks = np.zeros((T, MAX_BLOCKS, 4), np.float32)
    blocks[:, :n, 0:2] = ep.block_poses[:, :, 0:2] * ppm
    blocks[:, :n, 2] = ep.block_poses[:, :, 2]
    blocks[:, :n, 3] = 1.0
    grip = np.stack([ep.gripper[:, 0] * ppm, ep.gripper[:, 1] * ppm, ep.gripper[:, 2], ep.gripper[:, 3] * ppm], -1)
    return {"world.blocks_px": blocks.reshape(T, -1), "world.gripper_px": grip.astype(np.float32),
            "world.grasped": ep.grasped.astype(np.int64)}


# ---- writing a LeRobot dataset ---------------------------------------------------------------------------------


def _list_array(x: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")


def _feature(shape, dtype="float32", names=None) -> dict:
    return {"dtype": dtype, "shape": list(shape), "names": names}


def _write_lerobot(root: Path, kind: str, results: list[dict], cfg: WorldConfig, seed: int) -> dict:
    fps = results[0]["fps"]
    tasks: dict[str, int] = {}
    for r in results:
        tasks.setdefault(r["task"], len(tasks))
    key = VIDEO_KEYS[kind]
    T0 = 0
    ep_rows = []
    per_file = cfg.episodes_per_data_file
    total_frames = sum(r["length"] for r in results)
    for f0 in range(0, len(results), per_file):
        group = results[f0:f0 + per_file]
        chunk, fidx = _chunk_file(f0 // per_file, cfg.chunks_size)
        cols: dict[str, list] = {}
        for r in group:
            L = r["length"]
            cols.setdefault("episode_index", []).append(np.full(L, r["index"], np.int64))
            cols.setdefault("frame_index", []).append(np.arange(L, dtype=np.int64))
            cols.setdefault("timestamp", []).append((np.arange(L) / fps).astype(np.float32))
            cols.setdefault("index", []).append(np.arange(T0, T0 + L, dtype=np.int64))
            cols.setdefault("task_index", []).append(np.full(L, tasks[r["task"]], np.int64))
            for name, arr in r["rows"].items():
                cols.setdefault(name, []).append(arr)
            url, start, end = r["video"]
            vchunk, vfile = _parse_file(url)
            ep_rows.append({
                "episode_index": r["index"], "tasks": [r["task"]], "length": L,
                "dataset_from_index": T0, "dataset_to_index": T0 + L,
                "data/chunk_index": chunk, "data/file_index": fidx,
                f"videos/{key}/chunk_index": vchunk, f"videos/{key}/file_index": vfile,
                f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": end,
                **r["meta"],
            })
            T0 += L
        arrays, names = [], []
        for name, parts in cols.items():
            x = np.concatenate(parts)
            arrays.append(_list_array(x) if x.ndim == 2 else pa.array(x))
            names.append(name)
        _write_parquet(pa.Table.from_arrays(arrays, names=names),
                       root / DATA_PATH.format(episode_chunk=chunk, episode_file=fidx))
    for f0 in range(0, len(ep_rows), per_file):
        chunk, fidx = _chunk_file(f0 // per_file, cfg.chunks_size)
        table = pa.Table.from_pylist(ep_rows[f0:f0 + per_file])
        _write_parquet(table, root / EPISODES_PATH.format(episode_chunk=chunk, episode_file=fidx))
    _write_parquet(pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()),
                             "task": pa.array(list(tasks), pa.string())}), root / "meta/tasks.parquet")

    sample = results[0]["rows"]
    D = sample["action"].shape[1]
    domain = GRIPPER_DOMAIN if kind == "tabletop" else CAMERA_DOMAIN
    H, W = (cfg.tabletop.table.height_px, cfg.tabletop.table.width_px) if kind == "tabletop" else \
        (cfg.camera.height, cfg.camera.width)
    features = {
        "action": _feature([D], names=_action_names(kind)),
        "observation.state": _feature([D], names=_action_names(kind)),
        key: {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
              "info": {"video.height": H, "video.width": W, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                       "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": True,
                       "audio.codec": "flac", "audio.sample_rate": SAMPLE_RATE, "audio.channels": 2}},
        "timestamp": _feature([1]), "frame_index": _feature([1], "int64"), "episode_index": _feature([1], "int64"),
        "index": _feature([1], "int64"), "task_index": _feature([1], "int64"),
    }
    for name, arr in sample.items():
        if name.startswith("world."):
            features[name] = _feature([arr.shape[1]] if arr.ndim == 2 else [1], str(arr.dtype))
    files = {r["video"][0] for r in results}
    info = {
        "codebase_version": "v3.0",
        "robot_type": "cosmos3_world_gripper" if kind == "tabletop" else "cosmos3_world_camera",
        "total_episodes": len(results), "total_frames": total_frames, "total_tasks": len(tasks),
        "chunks_size": cfg.chunks_size, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
        "fps": fps, "splits": {"train": f"0:{len(results)}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": features, "total_videos": len(files),
        "cosmos3": {
            "embodiment": "tabletop_gripper" if kind == "tabletop" else "moving_camera",
            "domain_name": domain[0], "domain_id": domain[1], "raw_action_dim": domain[2],
            "action_format": _ACTION_DOC[kind],
            "sound": {"where": "FLAC audio track of each video file", "sample_rate": SAMPLE_RATE, "channels": 2,
                      "samples_per_frame": samples_per_frame(fps)},
            "generator": {"module": "cosmos3.world", "format_version": FORMAT_VERSION, "seed": seed},
        },
    }
    if kind == "tabletop":
        t = cfg.tabletop.table
        info["cosmos3"]["world"] = {
            "px_per_m": t.px_per_m, "table_bounds_m": list(t.bounds),
            "world.blocks_px": f"{MAX_BLOCKS} slots (the episode's world/blocks order) x (x_px, y_px, angle_rad, "
                               "present)",
            "world.gripper_px": "x_px, y_px, yaw_rad, opening_px (between the fingers)",
            "world.grasped": "slot of the grasped block, -1 when none",
        }
    else:
        info["cosmos3"]["world"] = {"world.camera": "camera X, Y over the scene and height h, meters"}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=2) + "\n")
    (root / "meta/stats.json").write_text(json.dumps(_stats(results), indent=2) + "\n")
    return {"path": kind, "episodes": len(results), "frames": total_frames, "domain_name": domain[0],
            "domain_id": domain[1], "raw_action_dim": domain[2], "video_key": key}


_ACTION_DOC = {
    "tabletop": "translation(3) + rot6d(6) + gripper(1), frame to frame in the gripper frame at t (x right, y down "
                "in the image, z into the table; meters); gripper = closedness reached at t+1, 0 open .. 1 closed; "
                "the last frame of each episode carries the identity motion",
    "camera": "translation(3) + rot6d(6), frame to frame in the camera frame at t (x right, y down, z forward = "
              "zoom in; meters); the camera does not rotate; the last frame of each episode carries the identity",
}


def _action_names(kind: str) -> list[str]:
    names = ["x", "y", "z", "r00", "r10", "r20", "r01", "r11", "r21"]
    return names + ["gripper"] if kind == "tabletop" else names


def _parse_file(url: str) -> tuple[int, int]:
    parts = url.split("/")
    return int(parts[-2].split("-")[1]), int(parts[-1].split("-")[1].split(".")[0])


def _stats(results: list[dict]) -> dict:
    out = {}
    for name in ("action", "observation.state"):
        x = np.concatenate([r["rows"][name] for r in results]).astype(np.float64)
        out[name] = {k: [round(float(v), 8) for v in vals] for k, vals in {
            "mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0),
            "q01": np.quantile(x, 0.01, axis=0), "q99": np.quantile(x, 0.99, axis=0)}.items()}
        out[name]["count"] = [int(x.shape[0])]
    return out


# ---- the entry point -------------------------------------------------------------------------------------------


def generate_dataset(out_dir: str | Path, episodes: int, seed: int, fps: int = 16, progress: bool = True,
                     workers: int = 1, config: WorldConfig | None = None, overwrite: bool = False) -> Path:
    """Generate `episodes` episodes of the synthetic world into out_dir; returns out_dir.

    fps: 16 or 24 (any rate that divides 48 kHz into whole samples per frame: 10, 16, 24, 30). workers > 1 runs
    episodes in that many processes; the output does not depend on it. overwrite=True replaces a non-empty out_dir.
    """
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if fps not in (10, 16, 24, 30):
        raise ValueError(f"fps must be one of 10, 16, 24, 30 (DESIGN 2.7), got {fps!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or WorldConfig()
    cfg = replace(cfg, tabletop=replace(cfg.tabletop, fps=fps),
                  camera=replace(cfg.camera, fps=fps, texture_seed=seed))

    kinds = plan_kinds(episodes, cfg.camera_fraction)
    per_kind: dict[str, list[tuple[int, int]]] = {"tabletop": [], "camera": []}
    for i, kind in enumerate(kinds):
        per_kind[kind].append((len(per_kind[kind]), episode_seed(seed, i)))
    jobs = []
    for kind, eps in per_kind.items():
        n = cfg.episodes_per_video_file
        for file_no, f0 in enumerate(range(0, len(eps), n)):
            jobs.append({"cfg": cfg, "out_dir": str(out), "kind": kind, "file_no": file_no,
                         "episodes": eps[f0:f0 + n]})

    from tqdm.auto import tqdm

    results: dict[str, list[dict]] = {"tabletop": [], "camera": []}
    with tqdm(total=episodes, desc="world episodes", unit="ep", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                for r in _make_file(job):
                    results[r["kind"]].append(r)
                bar.update(len(job["episodes"]))
        else:
            # spawn, not fork: the caller may hold threads (torch) that fork would copy in a bad state.
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_make_file, job): job for job in jobs}
                for fut in as_completed(futures):
                    for r in fut.result():
                        results[r["kind"]].append(r)
                    bar.update(len(futures[fut]["episodes"]))

    manifest = {"generator": "cosmos3.world", "format_version": FORMAT_VERSION, "seed": seed,
                "episodes": episodes, "fps": fps, "datasets": {}, "chat": "chat.jsonl",
                "config": _jsonable(asdict(cfg))}
    chat_lines = []
    for kind in ("tabletop", "camera"):
        rs = sorted(results[kind], key=lambda r: r["index"])
        if not rs:
            continue
        manifest["datasets"][kind] = _write_lerobot(out / kind, kind, rs, cfg, seed)
        for r in rs:
            chat_lines.extend(json.dumps(rec, ensure_ascii=False) for rec in r["chat"])
    (out / "chat.jsonl").write_text("\n".join(chat_lines) + "\n")
    manifest["chat_records"] = len(chat_lines)
    (out / "world.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def load_chat(path: str | Path) -> list[dict]:
    """Read chat.jsonl, turning its relative video URLs into absolute paths (next to the file)."""
    path = Path(path)
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        for msg in rec["messages"]:
            if isinstance(msg["content"], list):
                for part in msg["content"]:
                    if part.get("type") == "video_url":
                        part["video_url"]["url"] = str((path.parent / part["video_url"]["url"]).resolve())
        records.append(rec)
    return records
