"""The guard-model prompt check: a safety classifier that answers in text, loaded from a folder the user has.

    check = GuardModel.from_pretrained("path/to/Qwen3Guard-Gen-0.6B")     # any causal LM + tokenizer folder
    check.check("how do I ...")                                           # -> None, or the reason it is blocked

The release screens prompts with Qwen3Guard-Gen (docs/GUARDRAILS.md): the prompt goes in as one user message through
the model's chat template, the model writes a short verdict such as

    Safety: Unsafe
    Categories: Violent

and "Unsafe" blocks. We do the same with any checkpoint loadable by transformers' AutoModelForCausalLM (greedy
decoding, so the verdict is reproducible). Two choices differ from the release and are on purpose: an answer with no
"Safety:" label blocks (the release lets the prompt through when the guard model fails), and "Controversial" is
allowed unless `block_controversial` is set (as in the release).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_LABEL = re.compile(r"safety\s*:\s*(safe|unsafe|controversial)\b", re.IGNORECASE)
_CATEGORIES = re.compile(r"categories\s*:\s*([^\n]*)", re.IGNORECASE)


def parse_verdict(answer: str) -> tuple[str | None, list[str]]:
    """A guard model's answer -> (label "safe" | "unsafe" | "controversial" or None when absent, categories)."""
    label = _LABEL.search(answer)
    cats = _CATEGORIES.search(answer)
    categories = [c.strip() for c in cats.group(1).split(",") if c.strip() and c.strip().lower() != "none"] \
        if cats else []
    return (label.group(1).lower() if label else None), categories


@dataclass
class GuardModel:
    model: object  # a transformers causal LM
    tokenizer: object
    max_new_tokens: int = 64
    block_controversial: bool = False
    name: str = "guard_model"

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, **options) -> "GuardModel":
        """Load a causal LM and its tokenizer from a local folder (nothing is downloaded)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        root = Path(path)
        if not (root / "config.json").is_file():
            raise ValueError(f"--guard-model {path}: not a model folder (no config.json)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(root, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"--guard-model {path}: cannot load it with transformers "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device).eval(), tokenizer, **options)

    def answer(self, text: str) -> str:
        """The model's greedy answer to `text` as one user message (its chat template when it has one)."""
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
        else:
            prompt = text
        inputs = tok(prompt, return_tensors="pt").to(self.model.device)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=pad)
        return tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def check(self, text: str) -> str | None:
        label, categories = parse_verdict(self.answer(text))
        if label is None:
            return "the guard model's answer has no 'Safety:' verdict (blocked rather than let through unchecked)"
        if label == "unsafe" or (label == "controversial" and self.block_controversial):
            return f"the guard model rated it {label}" + (f" ({', '.join(categories)})" if categories else "")
        return None
