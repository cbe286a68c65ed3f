"""The Cosmos 3 network: mRoPE, attention, the MoT layer, heads and the whole model."""

from .mot import KVCache, UndCache
from .omni import Cosmos3Omni, GenInputs, GenOutputs

__all__ = ["Cosmos3Omni", "GenInputs", "GenOutputs", "KVCache", "UndCache"]
