"""open-cosmos3: an open implementation of the Cosmos 3 omnimodal world model.

    from cosmos3 import Generator, Reasoner
    gen = Generator.from_pretrained("pico")          # the embedded model, or an official-layout directory
"""

__version__ = "0.1.0"
__all__ = ["Generator", "Reasoner", "__version__"]


def __getattr__(name: str):
    # The surfaces import torch, diffusers and transformers: load them on first use, not on `import cosmos3`.
    if name == "Generator":
        from .generator import Generator

        return Generator
    if name == "Reasoner":
        from .reasoner import Reasoner

        return Reasoner
    raise AttributeError(f"module 'cosmos3' has no attribute {name!r}")
