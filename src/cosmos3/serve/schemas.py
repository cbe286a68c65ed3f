"""Request schemas (DESIGN 2.10). Every model forbids unknown fields: a field we do not implement is a 400, never
silently dropped. Numbers are range-checked here so that a bad request fails before it is queued."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, ValidationInfo,
                      field_validator)

from .errors import APIError, _loc_to_param, error_message, pick_error, short

# inf / nan are refused in every number (JSON bodies may spell them Infinity / NaN, forms "inf").
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)

MAX_SEED = 2**63 - 1
MAX_JSON_DEPTH = 32  # extra_params nesting (the deepest real field, action, is 2 levels)


def _valid_unicode(value: str) -> str:
    """Text must be encodable: a lone UTF-16 surrogate (JSON "\\ud800") would fail later, deep in the tokenizer."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"lone UTF-16 surrogate {value[e.start]!r} at position {e.start}; text must be valid "
                         "Unicode") from None
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL byte")
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]
# a media URL: a data URI (any length, bounded by the body limit) or a path / URL; checked again by MediaPolicy
URLText = Annotated[str, AfterValidator(_valid_unicode), AfterValidator(_no_nul)]


# ------------------------------------------------------------------------------------------------ chat


class TextPart(BaseModel):
    model_config = STRICT
    type: Literal["text"]
    text: Text


class MediaURL(BaseModel):
    model_config = STRICT
    url: URLText = Field(min_length=1, examples=["data:image/png;base64,iVBORw0KGgo..."])
    detail: Literal["auto"] | None = None  # OpenAI's field; only the default behaviour exists here


class ImagePart(BaseModel):
    model_config = STRICT
    type: Literal["image_url"]
    image_url: MediaURL


class VideoPart(BaseModel):
    model_config = STRICT
    type: Literal["video_url"]
    video_url: MediaURL


ContentPart = Annotated[Union[TextPart, ImagePart, VideoPart], Field(discriminator="type")]


class ChatMessage(BaseModel):
    model_config = STRICT
    role: Literal["system", "user", "assistant"]
    content: Text | list[ContentPart]


class StreamOptions(BaseModel):
    model_config = STRICT
    include_usage: bool = False


class VideoIOKwargs(BaseModel):
    model_config = STRICT
    fps: float | None = Field(default=None, gt=0, le=60)
    num_frames: int | None = Field(default=None, ge=1, le=768)


class MediaIOKwargs(BaseModel):
    model_config = STRICT
    video: VideoIOKwargs | None = None


class ChatTemplateKwargs(BaseModel):
    model_config = STRICT
    enable_thinking: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = STRICT
    model: Text | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None  # accepted only as 0 (no such penalty in the sampler)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    stop: Text | list[Text] | None = None
    n: int = 1
    ignore_eos: bool = False  # vLLM's extension: decode max_tokens tokens whatever the model says (benchmarks)
    logprobs: bool | None = None
    media_io_kwargs: MediaIOKwargs | None = None
    chat_template_kwargs: ChatTemplateKwargs | None = None

    def unsupported(self) -> APIError | None:
        if self.n != 1:
            return APIError(400, "n: only one choice per request is supported", param="n", code="unsupported")
        if self.frequency_penalty not in (None, 0, 0.0):
            return APIError(400, "frequency_penalty is not supported; use presence_penalty or repetition_penalty",
                            param="frequency_penalty", code="unsupported")
        if self.logprobs:
            return APIError(400, "logprobs are not supported", param="logprobs", code="unsupported")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            return APIError(400, "give max_tokens or max_completion_tokens, not both", param="max_tokens")
        if self.stream_options is not None and not self.stream:
            return APIError(400, "stream_options needs stream=true", param="stream_options")
        return None


class PromptUpsampleRequest(BaseModel):
    """POST /v1/prompts/upsample: a short prompt (and optionally the image the video will start from) for the
    reasoner to expand into the release's structured JSON prompt."""

    model_config = STRICT
    model: Text | None = None
    prompt: Text = Field(min_length=1, examples=["a robot arm stacks two blocks"])
    image_url: URLText | None = Field(default=None, min_length=1,
                                      description="as a chat image_url: a data URI, an allowed path or file:// URL, "
                                                  "or a remote URL when the server allows them")
    max_tokens: int | None = Field(default=None, ge=1)


# ------------------------------------------------------------------------------------------------ generation

_STEPS = dict(ge=1, le=1000)
_GUIDANCE = dict(ge=0.0, le=20.0)
_SHIFT = dict(gt=0.0, le=100.0)
_SEED = dict(ge=0, le=MAX_SEED)


class ImageExtraArgs(BaseModel):
    model_config = STRICT
    use_resolution_template: bool | None = None
    use_system_prompt: bool | None = None
    guardrails: bool | None = None


class ImageGenerationRequest(BaseModel):
    model_config = STRICT
    model: Text | None = None
    prompt: Text
    negative_prompt: Text | None = None
    size: Text | None = Field(default=None, examples=["256x256"])
    n: int = Field(default=1, ge=1)
    num_inference_steps: int | None = Field(default=None, **_STEPS)
    guidance_scale: float | None = Field(default=None, **_GUIDANCE)
    flow_shift: float | None = Field(default=None, **_SHIFT)
    seed: int | None = Field(default=None, **_SEED)
    response_format: Literal["b64_json"] = "b64_json"
    output_format: Literal["png", "jpeg"] = "png"
    extra_args: ImageExtraArgs | None = None

    @field_validator("seed")
    @classmethod
    def _seeds_fit(cls, value: int | None, info: ValidationInfo) -> int | None:
        n = info.data.get("n", 1)  # image i gets seed + i: every one of them must be a valid seed
        if value is not None and isinstance(n, int) and value + n - 1 > MAX_SEED:
            raise ValueError(f"seed + n - 1 = {value + n - 1} is above {MAX_SEED} (image i gets seed + i)")
        return value


class ControlHint(BaseModel):
    """One transfer control in extra_params (vLLM-Omni's fields): `control_path` the control video (an allowed local
    path); without it, edge and blur are computed from the input_reference video."""

    model_config = STRICT
    control_path: URLText | None = None
    control_weight: float | None = Field(default=None, ge=0.0, le=1e6)


class EdgeHint(ControlHint):
    preset_edge_threshold: Literal["none", "very_low", "low", "medium", "high", "very_high"] | None = None


class BlurHint(ControlHint):
    preset_blur_strength: Literal["none", "very_low", "low", "medium", "high", "very_high"] | None = None


def _hint_kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else "str" if isinstance(value, str) else "dict"


def _hint(model: type[ControlHint]):
    """true | a path | an object; tagged by the value's JSON type, so an error's param is the field's own path
    (extra_params.edge.control_weight), not the union member's class name."""
    return Annotated[Union[Annotated[bool, Tag("bool")], Annotated[URLText, Tag("str")], Annotated[model, Tag("dict")]],
                     Discriminator(_hint_kind)]


class ExtraParams(BaseModel):
    """The `extra_params` JSON of the video endpoints (vLLM-Omni's names)."""

    model_config = STRICT
    action_mode: Literal["policy", "forward_dynamics", "inverse_dynamics"] | None = None
    domain_name: Text | None = None
    raw_action_dim: int | None = Field(default=None, ge=1, le=64)
    action_chunk_size: int | None = Field(default=None, ge=1, le=300)
    action: list[list[float]] | None = None
    action_path: URLText | None = None
    condition_frame_indexes_vision: list[int] | None = None
    condition_video_keep: Literal["first", "last"] | None = None
    use_resolution_template: bool | None = None
    use_duration_template: bool | None = None
    use_system_prompt: bool | None = None
    guardrails: bool | None = None
    # transfer (docs/TRANSFER.md): true (compute from the input_reference video), a control video path, or an object
    edge: _hint(EdgeHint) | None = None
    blur: _hint(BlurHint) | None = None
    depth: _hint(ControlHint) | None = None
    seg: _hint(ControlHint) | None = None
    wsm: _hint(ControlHint) | None = None
    control_guidance: float | None = Field(default=None, ge=0.0, le=10.0)
    control_guidance_interval: list[float] | None = Field(default=None, min_length=2, max_length=2)


class VideoRequest(BaseModel):
    """The form fields of POST /v1/videos and /v1/videos/sync (input_reference is handled as a file)."""

    model_config = STRICT
    model: Text | None = None
    prompt: Text = ""
    negative_prompt: Text | None = None
    size: Text | None = Field(default=None, examples=["256x256"])
    seconds: float | None = Field(default=None, gt=0, le=60)
    num_frames: int | None = Field(default=None, ge=1)
    fps: float | None = Field(default=None, gt=0, le=120)
    num_inference_steps: int | None = Field(default=None, **_STEPS)
    guidance_scale: float | None = Field(default=None, **_GUIDANCE)
    flow_shift: float | None = Field(default=None, **_SHIFT)
    seed: int | None = Field(default=None, **_SEED)
    max_sequence_length: int | None = Field(default=None, ge=1)
    generate_sound: bool = False
    extra_params: ExtraParams | None = None

    @field_validator("extra_params", mode="before")
    @classmethod
    def _parse_extra(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f"not valid JSON ({e.msg} at position {e.pos})") from None
            except RecursionError:
                raise ValueError(f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
        if _depth(value) > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        return value


def _depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of lists / dicts, counted without recursion and stopping past `limit`."""
    stack, deepest = [(value, 1)], 0
    while stack:
        item, d = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_model(model: type[BaseModel], data: dict) -> BaseModel:
    """Validate `data` (e.g. form fields) against `model`, answering a 400 in the OpenAI shape on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = pick_error(list(e.errors()))
        param = _loc_to_param(tuple(first.get("loc", ())))
        if first.get("type") == "extra_forbidden":
            raise APIError(400, f"unknown or unsupported field {short(param)}", param=param, code="unknown_field")
        raise APIError(400, error_message(first, param), param=param, code="invalid_value")


def parse_size(size: str | None, param: str = "size") -> tuple[int | None, int | None]:
    """'WxH' -> (width, height); None -> (None, None)."""
    if size is None:
        return None, None
    parts = size.lower().replace("*", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdigit() and len(p.strip()) <= 6
                                  for p in parts):
        raise APIError(400, f"size={short(size)}: expected 'WIDTHxHEIGHT', e.g. '832x480'", param=param)
    return int(parts[0]), int(parts[1])
