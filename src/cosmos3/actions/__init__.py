"""Actions (DESIGN 2.8): one row of numbers per transition between two consecutive video frames; a chunk of ``T``
actions goes with ``T + 1`` frames. Every embodiment has a fixed raw width (``raw_dim``); inside the network rows are
zero-padded to :data:`ACTION_DIM` channels and a domain id selects the embodiment's projection weights.

    embodiments.py   the registry: names, domain ids, widths, default chunks, viewpoints; padding
    files.py         reading and writing action files (JSON / .npy), every problem named
    poses.py         rot6d, relative / absolute pose chains, Euler angles
    stats.py         statistics, quantile normalization, action_stats.json

Every problem with an action input is an :class:`ActionError` (a ``ValueError``) naming the source and the place.
"""

from .embodiments import (ACTION_DIM, ALIASES, AV_TRANSLATION_SCALE, EMBODIMENTS, NO_ACTION_DOMAIN_ID,
                          REFERENCE_VIEWPOINTS, VIEWPOINT_SENTENCES, ActionError, Embodiment, embodiment_names,
                          get_embodiment, pad_actions, unpad_actions)
from .files import load_actions, save_actions
from .poses import (absolute_to_relative, euler_xyz_to_matrix, matrix_to_rot6d, relative_pose_actions,
                    relative_to_absolute, rot6d_to_matrix)
from .stats import (ACTION_STATS_FILE, ActionStats, compute_stats, denormalize, load_stats_file, normalize,
                    save_stats_file)

__all__ = [
    "ACTION_DIM",
    "ALIASES",
    "AV_TRANSLATION_SCALE",
    "EMBODIMENTS",
    "NO_ACTION_DOMAIN_ID",
    "REFERENCE_VIEWPOINTS",
    "VIEWPOINT_SENTENCES",
    "ActionError",
    "ACTION_STATS_FILE",
    "ActionStats",
    "Embodiment",
    "absolute_to_relative",
    "compute_stats",
    "denormalize",
    "embodiment_names",
    "euler_xyz_to_matrix",
    "get_embodiment",
    "load_actions",
    "load_stats_file",
    "matrix_to_rot6d",
    "normalize",
    "pad_actions",
    "relative_pose_actions",
    "relative_to_absolute",
    "rot6d_to_matrix",
    "save_actions",
    "save_stats_file",
    "unpad_actions",
]


def __getattr__(name: str):
    # The LeRobot v3 reader is loaded lazily, so that code that only reads action files stays free of its imports.
    if name == "LeRobotDataset":
        from ..lerobot import LeRobotDataset

        return LeRobotDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
