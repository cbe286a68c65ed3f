"""Post-training Cosmos 3: flow matching for the generator (video, actions, sound) and SFT for the reasoner, with
full weights, one pathway or LoRA, on one process or many (FSDP2 via torchrun), resumable and exportable.

    from cosmos3.train import Trainer, load_recipe
    Trainer(load_recipe("recipes/lora_video_sft.toml")).fit()

Command line: `python -m cosmos3.train --help` (or `cosmos3 train`). See docs/TRAINING.md.
"""

from .recipe import TrainRecipe, load_recipe

__all__ = ["TrainRecipe", "Trainer", "load_recipe", "train_main"]


def __getattr__(name: str):  # the loop pulls in the network; import it only when asked
    if name == "Trainer":
        from .loop import Trainer

        return Trainer
    if name == "train_main":
        from .__main__ import train_main

        return train_main
    raise AttributeError(name)
