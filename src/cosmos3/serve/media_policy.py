"""What media a request may touch: local files only under the allow-list (resolved real paths, so neither `..` nor a
symlink can escape), remote URLs only when enabled (and then size-bounded), uploads checked for size, pixels and
frames before any model work. Also the guardrail hook (a no-op for now) whose refusals are 400s."""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path
from typing import Any

from PIL import Image

from ..media import MediaError, probe_video
from .errors import APIError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class Guardrail:
    """Content checks. Return None to allow, or a reason to refuse (answered as a 400). No-op by default;
    subclass and hand an instance to `create_app(..., guardrail=)` to enforce a policy."""

    def check_prompt(self, text: str, surface: str) -> str | None:  # surface: "chat" | "image" | "video"
        return None

    def check_output(self, result: Any, surface: str) -> str | None:
        return None


def refuse_if(reason: str | None, param: str | None = None) -> None:
    if reason:
        raise APIError(400, f"request refused by the content guardrail: {reason}", param=param,
                       code="content_policy_violation")


class MediaPolicy:
    def __init__(self, allowed_roots: list[Path], allow_remote: bool = False, max_remote_bytes: int = 32 << 20,
                 remote_timeout_s: float = 20.0, max_input_pixels: int = 4096 * 4096, max_frames: int = 300):
        self.roots = [Path(os.path.realpath(r)) for r in allowed_roots]
        self.allow_remote = allow_remote
        self.max_remote_bytes = max_remote_bytes
        self.remote_timeout_s = remote_timeout_s
        self.max_input_pixels = max_input_pixels
        self.max_frames = max_frames

    # -------------------------------------------------------------------------------------------- local files

    def local_path(self, value: str, param: str) -> Path:
        """A local path (or file:// URL) -> its real path, if that lies under an allowed root and is a file."""
        raw = value[len("file://"):] if value.startswith("file://") else value
        if not self.roots:
            raise APIError(403, "local media paths are disabled on this server (start it with "
                                "--allowed-local-media-path DIR)", param=param, code="path_not_allowed")
        real = Path(os.path.realpath(raw))
        if not any(real == root or root in real.parents for root in self.roots):
            raise APIError(403, f"{value!r} is outside the allowed media paths", param=param,
                           code="path_not_allowed")
        if not real.is_file():
            raise APIError(400, f"{value!r}: no such file", param=param, code="file_not_found")
        return real

    # -------------------------------------------------------------------------------------------- remote

    def fetch(self, url: str, param: str) -> bytes:
        if not self.allow_remote:
            raise APIError(400, f"remote media URLs are refused on this server ({url.split('://')[0]}://); send a "
                                f"data URI or an upload (or start the server with --allow-remote-media)",
                           param=param, code="remote_media_disabled")
        import httpx

        try:
            with httpx.stream("GET", url, timeout=self.remote_timeout_s, follow_redirects=True) as r:
                if r.status_code != 200:
                    raise APIError(400, f"fetching {url!r} answered HTTP {r.status_code}", param=param,
                                   code="remote_media_error")
                data = bytearray()
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > self.max_remote_bytes:
                        raise APIError(413, f"{url!r} is larger than {self.max_remote_bytes} bytes", param=param,
                                       code="media_too_large")
                return bytes(data)
        except httpx.HTTPError as e:
            raise APIError(400, f"fetching {url!r} failed: {e}", param=param, code="remote_media_error") from None

    def resolve_url(self, url: str, param: str, kind: str) -> str:
        """A chat media URL -> what the reasoner may read: data URIs as they are, allowed local files as real
        paths, remote URLs fetched into data URIs (when enabled)."""
        if url.startswith("data:"):
            return url
        match = _SCHEME.match(url)
        if match and match.group(1).lower() != "file":
            if match.group(1).lower() not in ("http", "https"):
                raise APIError(400, f"unsupported URL scheme {match.group(1)!r}", param=param, code="invalid_url")
            payload = self.fetch(url, param)
            mime = "image/png" if kind == "image" else "video/mp4"
            return f"data:{mime};base64," + base64.b64encode(payload).decode()
        return str(self.local_path(url, param))

    # -------------------------------------------------------------------------------------------- inputs

    def check_image(self, data: bytes | Path, param: str) -> None:
        """An image upload: decodable, and not more pixels than allowed (checked from the header first)."""
        try:
            with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
                w, h = im.size
                if w * h > self.max_input_pixels:
                    raise APIError(400, f"image of {w}x{h} pixels is above the limit of {self.max_input_pixels}",
                                   param=param, code="too_many_pixels")
                im.load()
        except APIError:
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise APIError(400, f"not a readable image ({e})", param=param, code="invalid_media") from None

    def check_video(self, path: Path, param: str) -> dict:
        try:
            info = probe_video(path)
        except (MediaError, ValueError, OSError) as e:
            raise APIError(400, f"not a readable video ({str(e).splitlines()[0]})", param=param,
                           code="invalid_media") from None
        w, h, n = info.get("width") or 0, info.get("height") or 0, info.get("frames") or 0
        if w * h > self.max_input_pixels:
            raise APIError(400, f"video of {w}x{h} pixels is above the limit of {self.max_input_pixels}",
                           param=param, code="too_many_pixels")
        if n > self.max_frames * 8:  # only the first / last few frames are used; refuse absurdly long inputs
            raise APIError(400, f"video of {n} frames is above the limit of {self.max_frames * 8}", param=param,
                           code="too_many_frames")
        return info


def sniff_kind(head: bytes) -> str | None:
    """'image' / 'video' from the first bytes of a file, or None."""
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff") or (head[:4] == b"RIFF" and
                                                                           head[8:12] == b"WEBP"):
        return "image"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide") or head.startswith(b"\x1aE\xdf\xa3"):
        return "video"
    return None
