"""Next-token sampling for the reasoner: penalties, temperature, top-k, top-p, seeded draws.

Order per step (the order vLLM and transformers use): repetition penalty (prompt and output tokens), presence
penalty (output tokens), then temperature 0 -> argmax, else divide by the temperature, keep the top k, keep the
smallest set of tokens whose probability reaches top_p, and draw from what is left with the request's generator.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


# Below this temperature a draw is the argmax (the limit of a vanishing temperature, as vLLM treats it): dividing
# logits by 1e-300 would only overflow them to inf.
GREEDY_BELOW = 1e-5
# A repetition penalty multiplies or divides logits; below this it overflows them instead of penalizing.
MIN_REPETITION_PENALTY = 0.01


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 1.0  # 1 = off
    top_k: int = 0  # 0 = off
    presence_penalty: float = 0.0  # subtracted once from every token already generated
    repetition_penalty: float = 1.0  # > 1 discourages any token seen in the prompt or the output
    seed: int | None = None
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # keep going past end-of-turn (benchmarks)

    def replace(self, **changes) -> "SamplingParams":
        """A copy with the given fields changed; None leaves a field as it is."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if isinstance(changes.get("stop"), str):
            changes["stop"] = (changes["stop"],)
        elif "stop" in changes:
            changes["stop"] = tuple(changes["stop"])
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> "SamplingParams":
        def bad(name: str, want: str) -> ValueError:
            return ValueError(f"{name}={getattr(self, name)!r}: expected {want}")

        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise bad(name, "a number")
            return float(value)

        if not 0.0 <= number("temperature") <= 2.0:
            raise bad("temperature", "a number in [0, 2]")
        if not 0.0 < number("top_p") <= 1.0:
            raise bad("top_p", "a number in (0, 1]")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < -1:
            raise bad("top_k", "an integer >= 0 (0 or -1 = off)")
        if not -2.0 <= number("presence_penalty") <= 2.0:
            raise bad("presence_penalty", "a number in [-2, 2]")
        if not MIN_REPETITION_PENALTY <= number("repetition_penalty") <= 2.0:
            raise bad("repetition_penalty", f"a number in [{MIN_REPETITION_PENALTY}, 2]")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise bad("max_tokens", "a positive integer")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise bad("seed", "an integer or None")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise bad("stop", "non-empty strings")
        return self


# DESIGN 2.9: the release's two presets.
PLAIN = SamplingParams(temperature=0.7, top_p=0.8, top_k=20, presence_penalty=1.5, repetition_penalty=1.0)
REASONING = SamplingParams(temperature=0.6, top_p=0.95, top_k=20, presence_penalty=0.0, repetition_penalty=1.0)


class SamplingError(ValueError):
    """A row's next token cannot be drawn (non-finite scores): that request ends with an error, the batch goes on."""


def penalize(logits: torch.Tensor, p: SamplingParams, seen: torch.Tensor, output_counts: torch.Tensor) -> torch.Tensor:
    """Repetition penalty on every token of the prompt or output, then presence penalty on output tokens. [V] float."""
    if p.repetition_penalty != 1.0:  # elementwise over the vocabulary: a boolean index would sync with the device
        penalized = torch.where(logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty)
        logits = torch.where(seen, penalized, logits)
    if p.presence_penalty != 0.0:
        logits = logits - p.presence_penalty * (output_counts > 0).float()
    return logits


def truncate(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p: the tokens left to draw from keep their scores, the others get -inf."""
    logits = logits / p.temperature
    if p.top_k > 0 and p.top_k < logits.shape[-1]:
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens ranked above it already reach top_p; the best token always stays.
        drop = (probs.cumsum(-1) - probs) >= p.top_p
        drop[0] = False
        # back to vocabulary order by a scatter (a boolean index would sync with the device)
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


def _check_finite(best: float, p: SamplingParams) -> None:
    # NaN wins max(), and +inf (e.g. a logit divided by temperature 1e-300) turns the softmax into NaN: either way
    # there is no distribution to draw from, and the row must end with this error rather than a made-up token.
    if best != best or best in (float("inf"), float("-inf")):
        raise SamplingError(f"sampling failed: non-finite token scores ({best}) with temperature={p.temperature}, "
                            f"repetition_penalty={p.repetition_penalty}, presence_penalty={p.presence_penalty}")


def draw(logits: torch.Tensor, p: SamplingParams, generator: torch.Generator | None) -> int:
    """Penalized logits [V] float -> the next token: argmax at temperature 0, else a draw after `truncate`.
    SamplingError when the scores allow no draw. One device sync per call (the best score and the token together)."""
    if p.temperature < GREEDY_BELOW:
        best, token = logits.max(-1)  # the first best on ties, as argmax and transformers' greedy search
    else:
        logits = truncate(logits, p)
        best = logits.max()
        # multinomial must never see NaN / inf: on CUDA its check is a device-side assert that takes the whole
        # process (every other request) down. A refused row draws from a harmless stand-in and is failed below.
        probs = torch.where(torch.isfinite(best), logits.softmax(-1), 1.0)
        token = torch.multinomial(probs, 1, generator=generator)[0]
    best, token = torch.stack([best, token.to(best.dtype)]).tolist()  # exact: ids < 2**24
    _check_finite(best, p)
    return int(token)


class Sampler:
    """Per-request sampling state: which tokens the prompt and the output hold, and the random generator."""

    def __init__(self, params: SamplingParams, vocab_size: int, prompt_ids: torch.Tensor,
                 device: torch.device | str = "cpu"):
        self.params = params
        self.output_counts = torch.zeros(vocab_size, dtype=torch.int32, device=device)
        self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)  # prompt or output
        if params.repetition_penalty != 1.0:
            self.seen[prompt_ids.to(device).reshape(-1)] = True
        self.generator = None
        if params.temperature > 0:
            self.generator = torch.Generator(device=device)
            if params.seed is not None:
                self.generator.manual_seed(params.seed)
            else:
                self.generator.seed()

    def update(self, token: int) -> None:
        self.output_counts[token] += 1
        self.seen[token] = True

    def __call__(self, logits: torch.Tensor) -> int:
        """logits [V] (any float dtype) -> the next token id; SamplingError when they allow no draw."""
        return draw(penalize(logits.float(), self.params, self.seen, self.output_counts), self.params, self.generator)
