"""Decoding for the reasoner: one engine (rows over a static KV cache, per-row sampling) under `Reasoner.chat` and
the server's chat batcher, and one streaming text layer (detokenization, stop strings, the <think> split)."""

from .engine import DecodeEngine, Row, end_of_turn_ids, step_inputs, token_finish
from .text import ChatOutput, TextStream, ThinkSplitter, find_stop, held_back, split_reasoning

__all__ = ["ChatOutput", "DecodeEngine", "Row", "TextStream", "ThinkSplitter", "end_of_turn_ids", "find_stop",
           "held_back", "split_reasoning", "step_inputs", "token_finish"]
