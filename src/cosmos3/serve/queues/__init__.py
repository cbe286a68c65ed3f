"""The server's request queues: generation jobs run one at a time (or N) from a bounded queue; chat requests wait
for a row of the decode engine and decode together. (Not "scheduler": that word is the sigma schedule's.)"""

from .batcher import ChatBatcher, ChatRequest
from .worker import GenerationQueue, GenTask, QueueFull

__all__ = ["ChatBatcher", "ChatRequest", "GenTask", "GenerationQueue", "QueueFull"]
