"""Server settings: where things live, who may call, and every limit (DESIGN 1.6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServerConfig:
    checkpoint: str | None = None
    storage: Path = Path("cosmos3-storage")
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str | None = None  # default: the checkpoint folder's name
    api_key: str | None = None  # Bearer token required on /v1/* when set
    allowed_local_media_paths: list[Path] = field(default_factory=list)
    allow_remote_media: bool = False
    device: str | None = None
    weights: str = "float"  # "int8": the towers' linears and lm_head in int8 (quant.py)
    # scheduling
    max_queue: int = 16  # generation jobs waiting (not running) before 429
    generation_workers: int = 1  # generation jobs run at the same time
    max_batch: int = 8  # chat requests decoded together in one step
    max_chat_waiting: int = 64  # chat requests waiting for a batch row before 429
    max_model_len: int = 4096  # chat: prompt + completion tokens of one request
    default_max_tokens: int = 512  # chat: when the request gives none (capped by max_model_len)
    # limits
    max_prompt_tokens: int = 2048  # chat and generation prompts
    max_upload_bytes: int = 64 * 1024 * 1024  # whole request body (413 beyond)
    max_pixels: int = 1280 * 1280  # output width x height
    max_input_pixels: int = 4096 * 4096  # one input image or video frame
    max_frames: int = 300  # output frames; input video frames too
    max_images: int = 4  # n of /v1/images/generations
    max_steps: int = 200  # num_inference_steps
    max_job_seconds: float | None = None  # estimated compute of one generation job, this device (None: no limit)
    max_remote_bytes: int = 32 * 1024 * 1024
    remote_timeout_s: float = 20.0
    # guardrails (docs/GUARDRAILS.md): on by default, as in the release and vLLM-Omni
    guardrails: bool = True  # False: no prompt screening, no face blur (--no-guardrails)
    allow_guardrails_off: bool = False  # honour a request's guardrails: false (refused with 400 otherwise)
    blocklist: str | None = None  # a user's blocklist file in place of the shipped one
    guard_model: str | None = None  # a guard-model folder (causal LM) that also screens prompts

    def __post_init__(self) -> None:
        self.storage = Path(self.storage)
        self.allowed_local_media_paths = [Path(p) for p in self.allowed_local_media_paths]
        for name in ("max_queue", "generation_workers", "max_batch", "max_model_len", "max_prompt_tokens",
                     "max_upload_bytes", "max_pixels", "max_input_pixels", "max_frames", "max_images", "max_steps",
                     "default_max_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
