"""Normalized actions from data to checkpoint: precompute keeps raw actions and writes their statistics, a latents
run with data.normalize_actions trains on q01/q99-normalized actions, the exported checkpoint carries the statistics
(action_stats.json) that the Generator then uses, and raw training on top of a normalized checkpoint is refused."""

import json
import shutil

import numpy as np
import pytest
import torch

from cosmos3.actions import ACTION_STATS_FILE, load_stats_file
from cosmos3.train.data import Encoder, LatentSource, LeRobotSource, precompute_latents
from cosmos3.train.loop import Trainer
from cosmos3.train.recipe import TrainRecipe
from train_helpers import latents_folder, lerobot_dataset, tiny_checkpoint


def _dataset_quantiles():
    entry = json.loads((lerobot_dataset() / "meta" / "stats.json").read_text())["action"]
    return np.asarray(entry["q01"]), np.asarray(entry["q99"])


def test_precompute_writes_the_raw_statistics_and_latents_normalize_with_them():
    folder = latents_folder()
    assert set(load_stats_file(folder / ACTION_STATS_FILE)) == {"umi"}
    raw, normed = LatentSource(folder), LatentSource(folder, normalize_actions=True)
    lo, hi = _dataset_quantiles()
    span = hi - lo
    for i in range(len(raw)):
        a = raw[i].actions.double().numpy()
        expected = np.where(span < 1e-8, 0.0, 2 * (a - lo) / np.where(span < 1e-8, 1, span) - 1)
        np.testing.assert_allclose(normed[i].actions.numpy(), expected, atol=1e-5)
    assert normed.action_stats.keys() == {"umi"} and raw.action_stats == {}
    # the world's actions span several orders of magnitude raw; normalized, every varying dimension reaches ~1
    varying = span > 1e-8
    assert np.abs(np.concatenate([normed[i].actions.numpy() for i in range(len(raw))]))[:, varying].max() > 0.3


def test_latents_without_statistics_are_refused(tmp_path):
    folder = tmp_path / "latents"
    shutil.copytree(latents_folder(), folder)
    (folder / ACTION_STATS_FILE).unlink()
    LatentSource(folder)  # raw training needs no statistics
    with pytest.raises(ValueError, match=r"action_stats.json: no statistics for umi; needed by data.normalize"):
        LatentSource(folder, normalize_actions=True)


def test_precompute_refuses_a_normalizing_source(tmp_path):
    source = LeRobotSource(lerobot_dataset(), Encoder(tiny_checkpoint(), torch.device("cpu"), False), chunk_size=4,
                           stride=4, height=32, width=32, normalize_actions=True)
    with pytest.raises(ValueError, match="precompute stores raw actions"):
        precompute_latents(source, tmp_path / "out", progress=False)


def _recipe(checkpoint, output, normalize: bool) -> TrainRecipe:
    r = TrainRecipe()
    r.model.checkpoint, r.model.train = str(checkpoint), "gen"
    r.data.kind, r.data.path, r.data.normalize_actions = "latents", str(latents_folder()), normalize
    r.loss.policy, r.loss.forward_dynamics, r.loss.inverse_dynamics = 0.0, 0.0, 1.0
    r.run.output, r.run.steps, r.run.batch_size, r.run.progress = str(output), 1, 2, False
    return r


def test_normalized_run_exports_its_statistics_and_raw_runs_on_top_are_refused(tmp_path):
    from cosmos3.generator import Generator

    trainer = Trainer(_recipe(tiny_checkpoint(), tmp_path / "run", normalize=True))
    trainer.fit()
    export = tmp_path / "run" / "export" / "checkpoint"
    lo, hi = _dataset_quantiles()
    stats = load_stats_file(export / ACTION_STATS_FILE)
    np.testing.assert_allclose(stats["umi"].q01, lo)
    np.testing.assert_allclose(stats["umi"].q99, hi)
    assert set(Generator.from_pretrained(export).action_stats) == {"umi"}
    assert (tmp_path / "run" / ACTION_STATS_FILE).is_file()  # for `train export` of the run's checkpoints
    with pytest.raises(ValueError, match=r"learnt umi actions normalized .* set data.normalize_actions = true"):
        Trainer(_recipe(export, tmp_path / "raw", normalize=False))
    assert not (tmp_path / "raw" / "checkpoints").exists()
