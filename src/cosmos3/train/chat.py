"""Chat data for reasoner SFT: conversations from a JSONL file, and single questions about the same media joined into
multi-turn conversations (`data.chat_turns`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


class ChatSource:
    """Chat JSONL: each line {"messages": [...]} in the OpenAI / Qwen3-VL shape; media URLs that are relative paths
    are resolved against the JSONL's folder. With `turns` > 1, single questions about the same media are joined into
    conversations of up to `turns` question/answer pairs (`join_turns`)."""

    def __init__(self, path: str | os.PathLike, turns: int = 1, seed: int = 0):
        if turns < 1:
            raise ValueError(f"data.chat_turns must be >= 1, got {turns}")
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such chat JSONL file")
        self.records = []
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            messages = rec.get("messages") if isinstance(rec, dict) else None
            if not isinstance(messages, list) or not any(m.get("role") == "assistant" for m in messages):
                raise ValueError(f"{self.path}:{n}: expected {{\"messages\": [...]}} with an assistant turn")
            self.records.append(self._resolve(messages))
        if turns > 1:
            self.records = join_turns(self.records, turns, seed)

    def _resolve(self, messages: list[dict]) -> list[dict]:
        for msg in messages:
            if isinstance(msg.get("content"), list):
                for part in msg["content"]:
                    kind = part.get("type")
                    if kind in ("image_url", "video_url") and isinstance(part.get(kind), dict):
                        url = part[kind].get("url", "")
                        if "://" not in url and not url.startswith("data:") and not Path(url).is_absolute():
                            part[kind]["url"] = str((self.path.parent / url).resolve())
        return messages

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> list[dict]:
        return self.records[i]


def _single_question(messages: list[dict]) -> tuple[str, dict, str, dict] | None:
    """(media key, media part, question text, answer message) of a [user: media + text, assistant] conversation."""
    if len(messages) != 2 or [m.get("role") for m in messages] != ["user", "assistant"]:
        return None
    content = messages[0].get("content")
    if not isinstance(content, list):
        return None
    media = [p for p in content if p.get("type") in ("image_url", "video_url", "image", "video")]
    texts = [p for p in content if p.get("type") == "text"]
    if len(media) != 1 or len(texts) != 1 or len(content) != 2:
        return None
    return json.dumps(media[0], sort_keys=True), media[0], texts[0]["text"], messages[1]


def join_turns(records: list[list[dict]], turns: int, seed: int) -> list[list[dict]]:
    """Single questions about the same media (one image or clip, the same part of it) joined into conversations of
    up to `turns` question/answer pairs, the media given once with the first question. Every answer stays labelled,
    so a step sees `turns` times the answers for one media encode; the questions about one media are shuffled
    (seeded) before they are cut into conversations. Conversations of any other shape stay as they are. Order: by
    each media's first line."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list] = {}
    out: list = []
    for messages in records:
        single = _single_question(messages)
        if single is None:
            out.append(messages)
            continue
        key = single[0]
        if key not in groups:
            groups[key] = []
            out.append(key)  # where this media's conversations go
        groups[key].append(single)
    joined = []
    for entry in out:
        if not isinstance(entry, str):
            joined.append(entry)
            continue
        group = [groups[entry][i] for i in rng.permutation(len(groups[entry]))]
        for start in range(0, len(group), turns):
            messages = []
            for k, (_, media, question, answer) in enumerate(group[start:start + turns]):
                content = [media, {"type": "text", "text": question}] if k == 0 else question
                messages += [{"role": "user", "content": content}, answer]
            joined.append(messages)
    return joined
