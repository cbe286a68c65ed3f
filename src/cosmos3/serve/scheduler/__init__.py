"""Scheduling: generation jobs run one at a time (or N) from a bounded queue; chat requests decode together."""

from .batcher import ChatBatcher, ChatRequest
from .worker import GenerationScheduler, GenTask, QueueFull

__all__ = ["ChatBatcher", "ChatRequest", "GenTask", "GenerationScheduler", "QueueFull"]
