"""What media a request may touch: local files only under the allow-list (resolved real paths, so neither `..` nor a
symlink can escape), remote URLs only when enabled (and then size-bounded), uploads checked for size, pixels and
frames before any model work. Also the guardrail refusal: a 400 with code content_blocked naming the check."""

from __future__ import annotations

import base64
import io
import os
import re
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..guardrails import Blocked, Guardrail
from ..media import MediaError, probe_video
from .errors import APIError, short

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
MAX_PATH_CHARS = 4096  # PATH_MAX; each path component at most NAME_MAX (255) bytes


__all__ = ["Guardrail", "MediaPolicy", "refuse_if"]  # Guardrail: the type of create_app's guardrail=


class ContentBlocked(APIError):
    """A guardrail's refusal: 400, code content_blocked, and `check` (which check refused) in the error body."""

    def __init__(self, check: str, reason: str, param: str | None):
        super().__init__(400, f"{param or 'request'} blocked by the {check} check: {reason}", param=param,
                         code="content_blocked")
        self.check = check

    def body(self) -> dict:
        body = super().body()
        body["error"]["check"] = self.check
        return body


def refuse_if(reason: "Blocked | str | None", param: str | None = None) -> None:
    """Raise ContentBlocked for a guardrail's refusal (a Blocked, or the reason text of a Guardrail subclass)."""
    if isinstance(reason, Blocked):
        raise ContentBlocked(reason.check, reason.reason, param)
    if reason:
        raise ContentBlocked("guardrail", str(reason), param)


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
        if "\x00" in raw:
            raise APIError(400, f"{param}: the path contains a NUL byte", param=param, code="invalid_path")
        if len(raw) > MAX_PATH_CHARS or any(len(part.encode("utf-8", "surrogateescape")) > 255
                                            for part in raw.split("/")):
            raise APIError(400, f"{param}: path of {len(raw)} characters is too long (at most {MAX_PATH_CHARS}, "
                                "255 bytes per component)", param=param, code="invalid_path")
        if not self.roots:
            raise APIError(403, "local media paths are disabled on this server (start it with "
                                "--allowed-local-media-path DIR)", param=param, code="path_not_allowed")
        try:
            real = Path(os.path.realpath(raw))
            inside = any(real == root or root in real.parents for root in self.roots)
            is_file = inside and real.is_file()
        except (OSError, ValueError) as e:
            raise APIError(400, f"{param}: unusable path ({type(e).__name__}: {e.strerror if isinstance(e, OSError) else e})",
                           param=param, code="invalid_path") from None
        if not inside:
            raise APIError(403, f"{short(value)} is outside the allowed media paths", param=param,
                           code="path_not_allowed")
        if not is_file:
            raise APIError(400, f"{short(value)}: no such file", param=param, code="file_not_found")
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
                    raise APIError(400, f"fetching {short(url)} answered HTTP {r.status_code}", param=param,
                                   code="remote_media_error")
                data = bytearray()
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > self.max_remote_bytes:
                        raise APIError(413, f"{short(url)} is larger than {self.max_remote_bytes} bytes", param=param,
                                       code="media_too_large")
                return bytes(data)
        except httpx.HTTPError as e:
            raise APIError(400, f"fetching {short(url)} failed: {e}", param=param, code="remote_media_error") from None

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

    def image_size(self, data: bytes | Path, param: str) -> tuple[int, int]:
        """(width, height) declared by an image's header, refused above max_input_pixels. Nothing is decoded."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
                with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
                    w, h = im.size
        except Image.DecompressionBombError as e:  # Pillow refuses > 2 x its MAX_IMAGE_PIXELS at open
            raise APIError(413, f"{param}: image is above this server's limit of {self.max_input_pixels} pixels "
                                f"(--max-input-pixels): {e}", param=param, code="too_many_pixels") from None
        except UnidentifiedImageError:
            raise APIError(400, f"{param}: not a readable image (not PNG, JPEG or WEBP data)", param=param,
                           code="invalid_media") from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise APIError(400, f"{param}: not a readable image ({e})", param=param, code="invalid_media") from None
        self._check_pixels(w, h, "image", param)
        return w, h

    def _check_pixels(self, w: int, h: int, what: str, param: str) -> None:
        if w * h > self.max_input_pixels:
            raise APIError(413, f"{param}: {what} of {w}x{h} = {w * h} pixels is above this server's limit of "
                                f"{self.max_input_pixels} (--max-input-pixels)", param=param, code="too_many_pixels")
        if w < 1 or h < 1:
            raise APIError(400, f"{param}: {what} of {w}x{h} pixels is empty", param=param, code="invalid_media")

    def check_image(self, data: bytes | Path, param: str) -> None:
        """An image upload: not more pixels than allowed (from the header, before decoding), then decodable."""
        self.image_size(data, param)
        try:
            with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
                im.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise APIError(400, f"{param}: not a readable image ({e})", param=param, code="invalid_media") from None

    def video_size(self, path: Path, param: str) -> tuple[int, int]:
        """(width, height) of a video's first stream from the container and codec headers, refused above
        max_input_pixels. Nothing is decoded."""
        import av

        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise APIError(400, f"{param}: no video stream", param=param, code="invalid_media")
                ctx = container.streams.video[0].codec_context
                w, h = int(ctx.width or 0), int(ctx.height or 0)
        except APIError:
            raise
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
            raise APIError(400, f"{param}: not a readable video ({str(e).splitlines()[0] if str(e) else e})",
                           param=param, code="invalid_media") from None
        self._check_pixels(w, h, "video frame", param)
        return w, h

    def check_video(self, path: Path, param: str) -> dict:
        self.video_size(path, param)  # before probe_video decodes its first frame
        try:
            info = probe_video(path)
        except (MediaError, ValueError, OSError) as e:
            raise APIError(400, f"{param}: not a readable video ({str(e).splitlines()[0]})", param=param,
                           code="invalid_media") from None
        w, h, n = info.get("width") or 0, info.get("height") or 0, info.get("frames") or 0
        self._check_pixels(w, h, "video frame", param)
        if n > self.max_frames * 8:  # only the first / last few frames are used; refuse absurdly long inputs
            raise APIError(400, f"video of {n} frames is above the limit of {self.max_frames * 8}", param=param,
                           code="too_many_frames")
        return info

    def check_chat_media(self, url: str, param: str, kind: str) -> None:
        """A resolved chat media URL (data URI or allowed real path): its kind matches the part (`image_url` /
        `video_url`) and its declared size is within max_input_pixels, all before the reasoner decodes it."""
        if url.startswith("data:"):
            head, _, payload = url.partition(",")
            if not _ or ";base64" not in head:
                raise APIError(400, f"{param}: malformed data URI (expected data:<mime>;base64,<payload>)",
                               param=param, code="invalid_media")
            try:
                data = base64.b64decode(payload, validate=True)
            except (ValueError, TypeError):
                raise APIError(400, f"{param}: data URI payload is not valid base64", param=param,
                               code="invalid_media") from None
            if not data:
                raise APIError(400, f"{param}: empty data URI", param=param, code="invalid_media")
            head_bytes = data[:16]
        else:
            with open(url, "rb") as f:
                head_bytes = f.read(16)
            data = Path(url)
        found = sniff_kind(head_bytes)
        if kind == "image":
            if found == "video":
                raise APIError(400, f"{param}: image_url holds a video; send it as a video_url part", param=param,
                               code="invalid_media")
            self.image_size(data, param)
            return
        if found == "image":
            raise APIError(400, f"{param}: video_url holds an image; send it as an image_url part", param=param,
                           code="invalid_media")
        if isinstance(data, Path):
            self.video_size(data, param)
            return
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
            tmp.write(data)
            tmp.flush()
            self.video_size(Path(tmp.name), param)


def sniff_kind(head: bytes) -> str | None:
    """'image' / 'video' from the first bytes of a file, or None."""
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff") or (head[:4] == b"RIFF" and
                                                                           head[8:12] == b"WEBP"):
        return "image"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide") or head.startswith(b"\x1aE\xdf\xa3"):
        return "video"
    return None
