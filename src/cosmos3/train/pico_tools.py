"""Small tools of the pico recipe that other recipes can use: a learning curve drawn as a PNG (no plotting library),
and a checkpoint folder rewritten with every weight file under a size limit (sharded, with diffusers' index)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def plot_curve(rows: list[dict], path: Path, series: tuple = ("heldout_psnr_db", "loss"),
               refs: dict | None = None, title: str = "") -> Path:
    """A learning curve as a PNG (PIL only): one panel per series over `step`, with labelled horizontal reference
    lines in the first panel (refs: {label: value})."""
    from PIL import Image, ImageDraw

    W, H, pad, gap = 640, 220, 48, 16
    img = Image.new("RGB", (W, len(series) * (H + gap) + 24), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, 4), title, fill="black")
    steps = [r["step"] for r in rows]
    x0, x1 = 0, max(steps + [1])
    for k, key in enumerate(series):
        top = 24 + k * (H + gap)
        ys = [r[key] for r in rows if key in r]
        extra = list((refs or {}).values()) if k == 0 else []
        lo, hi = min(ys + extra), max(ys + extra)
        lo, hi = (lo - 1, hi + 1) if hi - lo < 1e-9 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))

        def at(step, v):
            return (pad + (step - x0) / (x1 - x0) * (W - 2 * pad), top + H - 20 - (v - lo) / (hi - lo) * (H - 30))

        draw.rectangle([pad, top, W - pad, top + H - 20], outline="grey")
        for v in (lo, (lo + hi) / 2, hi):
            draw.text((2, at(0, v)[1] - 6), f"{v:.3g}", fill="grey")
        for st in (x0, x1 // 2, x1):
            draw.text((at(st, lo)[0] - 8, top + H - 16), str(st), fill="grey")
        for label, v in (refs or {}).items() if k == 0 else ():
            y = at(0, v)[1]
            draw.line([pad, y, W - pad, y], fill=(200, 120, 0))
            draw.text((pad + 4, y - 12), f"{label} {v:g}", fill=(200, 120, 0))
        pts = [at(r["step"], r[key]) for r in rows if key in r]
        if len(pts) > 1:
            draw.line(pts, fill=(31, 119, 180), width=2)
        for x, y in pts:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(31, 119, 180))
        draw.text((W - pad - 160, top + 4), f"{key} vs step", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


TRAINER_SERIES = {"reasoner": ("loss",), "vision": ("loss",),
                  "generator": ("loss", "loss_vision", "loss_actions", "loss_sound")}


def smoothed(rows: list[dict], keys: tuple, window: int = 50, points: int = 120) -> list[dict]:
    """A trainer's per-step metrics as at most `points` rows, each the mean of the `window` steps up to it: a batch
    of 8 questions or clips is too noisy a loss to read a trend from."""
    rows = sorted({r["step"]: r for r in rows}.values(), key=lambda r: r["step"])  # a resumed run redoes steps
    if not rows:
        return []
    every = max(1, -(-len(rows) // points))  # ceil: at most `points` rows
    out = []
    for end in range(every - 1, len(rows), every):
        span = rows[max(0, end - window + 1):end + 1]
        row = {"step": rows[end]["step"]}
        for key in keys:
            vals = [r[key] for r in span if key in r]
            if vals:
                row[key] = sum(vals) / len(vals)
        out.append(row)
    return out


SHARD_LIMIT = 15 * 2**20  # bytes: every weight file written by write_sharded stays under 16 MB


def write_sharded(src: Path, dst: Path, max_bytes: int = SHARD_LIMIT) -> dict:
    """Copy a checkpoint folder to `dst` with every safetensors file larger than `max_bytes` split into shards in the
    layout diffusers and transformers write themselves (`<stem>-0000i-of-0000n.safetensors` + `<stem>.safetensors.
    index.json` with metadata.total_size and weight_map), so `from_pretrained` of either library, and this package's
    loader, read the folder as it is. Files already under the limit are copied unchanged. A single tensor larger than
    the limit is an error (it cannot be split without changing the format). Returns {"files", "largest_bytes"}."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.tmp"))
    for f in sorted(tmp.rglob("*.safetensors")):
        if f.stat().st_size <= max_bytes:
            continue
        with safe_open(str(f), "pt") as h:
            metadata = h.metadata() or {"format": "pt"}
            tensors = {k: h.get_tensor(k) for k in h.keys()}
        groups, size = [[]], 0
        for k, t in tensors.items():
            nbytes = t.numel() * t.element_size()
            if nbytes + 4096 > max_bytes:
                raise ValueError(f"{f.relative_to(tmp)}: tensor {k} alone is {nbytes} bytes, over the "
                                 f"{max_bytes}-byte shard limit")
            if groups[-1] and size + nbytes + 4096 * (len(groups[-1]) + 1) > max_bytes:
                groups.append([])
                size = 0
            groups[-1].append(k)
            size += nbytes
        stem = f.name[:-len(".safetensors")]
        weight_map = {}
        for i, keys in enumerate(groups, 1):
            name = f"{stem}-{i:05d}-of-{len(groups):05d}.safetensors"
            save_file({k: tensors[k].contiguous() for k in keys}, str(f.parent / name), metadata=metadata)
            weight_map.update({k: name for k in keys})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (f.parent / f"{f.name}.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n")
        f.unlink()
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    sizes = [f.stat().st_size for f in dst.rglob("*") if f.is_file()]
    return {"files": len(sizes), "largest_bytes": max(sizes, default=0)}
