"""Synthetic physics clips whose natural speed is known, for training and honest evaluation.

Balls thrown under gravity, pendulums, sliding boxes and springs, filmed by a camera
whose distance and the objects' speeds vary widely, so that pixel speed alone says
little about playback speed and a model has to learn what natural motion looks like.
See docs/SYNTHETIC.md.
"""

from speednet.synthetic.library import render_clip, render_frames, write_synthetic_library
from speednet.synthetic.scenes import SCENE_TYPES, VARIANTS, SceneParams, sample_scene

__all__ = ["SCENE_TYPES", "VARIANTS", "SceneParams", "render_clip", "render_frames", "sample_scene",
           "write_synthetic_library"]
