"""Captions and question/answer pairs, computed from the simulator's ground truth (never from the plan).

Every statement here is read off the episode record: which blocks moved and where (net displacement between the
first and last frame), what touched what (physics contacts), what was grasped. So a caption can say "the push
failed" when physics made it fail, and every answer can be checked against the state. Directions are as seen in
the image ("up" is toward the top of the frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import direction_word, toward

MOVED_M = 0.005  # a block whose net displacement exceeds 5 mm "moved"
TURNED_RAD = 0.2  # ... and one that turned more than ~11 degrees "turned"


@dataclass
class QA:
    kind: str  # which_moved, direction, touch, count, color, shape, grasp, success, next_action, plausible, camera_*
    question: str
    answer: str
    clip: str = "episode"  # which video it is about: "episode", "prefix" (first frames only) or "violation"


def _join(names: list[str]) -> str:
    if not names:
        return ""
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


@dataclass
class BlockMotion:
    color: str
    name: str  # "red square"
    moved: bool
    distance_cm: float
    direction: str  # direction_word of the net displacement, or "none"
    turned: bool
    grasped: bool
    touched_by_gripper: bool
    touched_blocks: list[str]  # colors of the other blocks it touched
    hit_rim: bool


def block_motions(ep) -> list[BlockMotion]:
    out = []
    for i, b in enumerate(ep.blocks):
        d = ep.block_poses[-1, i, :2] - ep.block_poses[0, i, :2]
        dist = float(np.hypot(*d))
        moved = dist > MOVED_M
        turn = abs((ep.block_poses[-1, i, 2] - ep.block_poses[0, i, 2] + math.pi) % (2 * math.pi) - math.pi)
        if b.shape == "circle":
            turn = 0.0  # a spinning disc looks the same
        elif b.shape == "square":
            turn = min(turn % (math.pi / 2), math.pi / 2 - turn % (math.pi / 2))  # symmetric every 90 degrees
        else:
            turn = min(turn % (2 * math.pi / 3), 2 * math.pi / 3 - turn % (2 * math.pi / 3))
        others = sorted(o.color for o in ep.blocks if o.color != b.color and
                        tuple(sorted((o.color, b.color))) in ep.touched)
        out.append(BlockMotion(b.color, b.name, moved, round(dist * 100, 1), direction_word(*d) if moved else "none",
                               bool(turn > TURNED_RAD), bool((ep.grasped == i).any()),
                               tuple(sorted(("gripper", b.color))) in ep.touched, others,
                               tuple(sorted(("rim", b.color))) in ep.touched))
    return out


# ---- tabletop ---------------------------------------------------------------------------------------------------


def tabletop_captions(ep) -> list[str]:
    """[short caption, detailed caption] for a tabletop episode."""
    motions = block_motions(ep)
    names = [m.name for m in motions]
    moved = [m for m in motions if m.moved]
    grasped = [m for m in motions if m.grasped]
    if grasped and grasped[0].moved:
        g = grasped[0]
        short = f"A robot gripper picks up the {g.name} and moves it {toward(g.direction)}."
    elif grasped:
        short = f"A robot gripper grasps the {grasped[0].name} but does not move it."
    elif moved:
        first = max(moved, key=lambda m: m.distance_cm)
        how = "pushes" if first.touched_by_gripper else "knocks"
        short = f"A robot gripper {how} the {first.name} {toward(first.direction)}."
    else:
        short = "A robot gripper moves over the table without moving any block."

    n = len(motions)
    parts = [f"Seen from above, a gray table holds {_count_word(n)} block{'s' if n > 1 else ''} "
             f"({_join(['a ' + x for x in names])}) and a robot gripper with white fingers."]
    for text in _event_story(ep):
        parts.append(_sentence(text))
    for m in motions:
        if m.moved:
            turn = ", turning as it goes" if m.turned else ""
            parts.append(f"The {m.name} ends up {m.distance_cm:.0f} cm {_relative(m.direction)} where it "
                         f"started{turn}." if m.distance_cm >= 1 else
                         f"The {m.name} shifts slightly {toward(m.direction)}{turn}.")
        else:
            parts.append(f"The {m.name} stays where it is." if not m.touched_by_gripper and not m.touched_blocks
                         else f"The {m.name} is touched but does not move.")
    return [short, " ".join(parts)]


def _event_story(ep) -> list[str]:
    """What happens, in time order: first touches of each pair, grasps and releases, as clauses."""
    names = {b.color: b.name for b in ep.blocks}
    seen, story = set(), []
    for e in ep.events:
        key = (e.a, e.b)
        if key in seen:
            continue
        seen.add(key)
        if "gripper" in key:
            text = f"the gripper touches the {names[e.b if e.a == 'gripper' else e.a]}"
        elif "rim" in key:
            text = f"the {names[e.b if e.a == 'rim' else e.a]} hits the edge of the table"
        else:
            text = f"the {names[e.a]} and the {names[e.b]} bump into each other"
        story.append((e.frame, len(story), text))
    for i, b in enumerate(ep.blocks):
        held = np.flatnonzero(ep.grasped == i)
        if held.size:
            story.append((int(held[0]), len(story), f"the gripper closes on the {b.name}"))
            if held[-1] < ep.num_frames - 1:
                story.append((int(held[-1]) + 1, len(story), f"the gripper lets go of the {b.name}"))
    return [text for _f, _k, text in sorted(story)]


def _relative(word: str) -> str:
    """'left' -> 'to the left of', 'up' -> 'above', 'down and to the right' -> 'down and to the right of'."""
    return {"up": "above", "down": "below"}.get(word, f"{toward(word)} of")


def _count_word(n: int) -> str:
    return ["no", "one", "two", "three", "four"][n] if n < 5 else str(n)


def tabletop_questions(ep, rng: np.random.Generator) -> list[QA]:
    """Question/answer pairs about the full episode video (each answer is read off the simulator state)."""
    motions = block_motions(ep)
    qa: list[QA] = []
    moved = [m for m in motions if m.moved]
    if moved:
        most = max(moved, key=lambda m: m.distance_cm)
        qa.append(QA("which_moved", "Which block moved the most?", _sentence(f"the {most.name}")))
    else:
        qa.append(QA("which_moved", "Which block moved the most?", "None of the blocks moved."))
    qa.append(QA("count", "How many blocks are on the table?", str(len(motions))))
    qa.append(QA("count_moved", "How many blocks moved?", str(len(moved))))
    m = motions[int(rng.integers(len(motions)))]
    qa.append(QA("direction", f"In which direction did the {m.name} move?",
                 _sentence(toward(m.direction)) if m.moved else "It did not move."))
    # Touch questions: the gripper with one block, and one pair of blocks when there are two or more.
    m = motions[int(rng.integers(len(motions)))]
    qa.append(QA("touch", f"Did the gripper touch the {m.name}?", "Yes." if m.touched_by_gripper else "No."))
    if len(motions) >= 2:
        i, j = rng.permutation(len(motions))[:2]
        a, b = motions[int(i)], motions[int(j)]
        qa.append(QA("touch", f"Did the {a.name} touch the {b.name}?", "Yes." if b.color in a.touched_blocks
                     else "No."))
    b = ep.blocks[int(rng.integers(len(ep.blocks)))]
    if rng.random() < 0.5:
        qa.append(QA("color", f"What color is the {b.shape}?", _sentence(b.color)))
    else:
        qa.append(QA("shape", f"What shape is the {b.color} block?", _sentence(f"a {b.shape}")))
    grasped = [m for m in motions if m.grasped]
    qa.append(QA("grasp", "Did the gripper pick up a block?",
                 f"Yes, the {grasped[0].name}." if grasped else "No."))
    if ep.policy != "random":
        qa.append(QA("success", f"The robot was asked: \"{ep.instruction}\" Did it succeed?",
                     "Yes." if ep.success else "No."))
    return qa


def next_action_question(ep, rng: np.random.Generator, min_frame: int = 4) -> tuple[int, QA] | None:
    """Cut the episode at a frame where the current phase continues for a while; ask what comes next.

    Returns (number of frames in the prefix clip, QA) or None when no such moment exists. The answer is the policy's
    phase from the last frame of the prefix on, i.e. what the gripper actually does next.
    """
    T = len(ep.phases)
    cuts = [k for k in range(min_frame, T - 3) if ep.phases[k] == ep.phases[k + 1] == ep.phases[k + 2]
            and ep.phases[k] != "stay still"]
    if not cuts:
        return None
    k = cuts[int(rng.integers(len(cuts)))]
    q = f"The robot was asked: \"{ep.instruction}\" What should the gripper do next?"
    return k + 1, QA("next_action", q, _sentence(ep.phases[k]), clip="prefix")


def plausibility_questions(ep, violation) -> list[QA]:
    """One question on the real episode (plausible) and one on the violated clip (implausible)."""
    q = "Is the motion in this video physically plausible? Answer yes or no, then explain."
    return [
        QA("plausible", q, "Yes. Blocks only move when the gripper or another block pushes them, and nothing "
                           "passes through anything."),
        QA("plausible", q, f"No. {_sentence(violation.description)}", clip="violation"),
    ]


# ---- camera -----------------------------------------------------------------------------------------------------


def camera_motion(ep) -> tuple[str, str]:
    """(pan direction word or "none", zoom "in" / "out" / "none") from the camera's true trajectory."""
    start, end = ep.poses[0], ep.poses[-1]
    dx, dy = end[0] - start[0], end[1] - start[1]
    # Pan is judged in the image: a shift by more than 5% of the view width counts.
    view_w = ep.view_width(start[2])
    pan = direction_word(dx, dy) if math.hypot(dx, dy) > 0.05 * view_w else "none"
    ratio = end[2] / start[2]
    zoom = "in" if ratio < 0.93 else "out" if ratio > 1.07 else "none"
    return pan, zoom


def camera_captions(ep) -> list[str]:
    pan, zoom = camera_motion(ep)
    clauses = []
    if pan != "none":
        clauses.append(f"pans {toward(pan)}")
    if zoom != "none":
        clauses.append(f"zooms {zoom}")
    what = " and ".join(clauses) if clauses else "holds still"
    short = f"The camera {what} over a colorful textured surface."
    slide = ", so the scene slides the other way across the frame" if pan != "none" else ""
    scale = {"in": ", and the patterns grow larger", "out": ", and the patterns shrink", "none": ""}[zoom]
    long = (f"A top-down view of a large textured surface with colored patches, stripes and spots. The camera "
            f"{what}{slide}{scale}. Nothing in the scene moves by itself.")
    return [short, long]


def camera_questions(ep) -> list[QA]:
    pan, zoom = camera_motion(ep)
    return [
        QA("camera_pan", "In which direction does the camera pan?",
           _sentence(toward(pan)) if pan != "none" else "It does not pan."),
        QA("camera_zoom", "Does the camera zoom in, zoom out, or neither?",
           {"in": "It zooms in.", "out": "It zooms out.", "none": "Neither."}[zoom]),
    ]
