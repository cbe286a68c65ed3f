"""open-cosmos3: an open implementation of the Cosmos 3 omnimodal world model."""

__version__ = "0.1.0"
