"""Frey faces (Roweis): 1,965 grey-level 28x20 video frames, scaled to [0, 1]."""

import os

import numpy as np
import scipy.io
import tensorflow as tf

from zoo.data import pipeline

# Consecutive frames are near duplicates, so the test split is the last contiguous block.
NUM_TEST = 200


def read(path):
    """Reads `frey_rawface.mat` (variable `ff`, uint8 `[560, 1965]`): float32 `[1965, 28, 20, 1]` in [0, 1]."""
    if path is not None and os.path.isdir(path):
        raise FileNotFoundError(f"dataset 'frey_faces': {path!r} is a directory; pass path= the file frey_rawface.mat")
    if path is None or not os.path.exists(path):
        raise FileNotFoundError(
            f"dataset 'frey_faces': file {path!r} not found. Fix: pass path= your copy of "
            "frey_rawface.mat (https://cs.nyu.edu/~roweis/data/frey_rawface.mat)."
        )
    try:
        variables = scipy.io.loadmat(path)
    except (ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as error:  # not MATLAB; v7.3 (HDF5)
        raise ValueError(f"dataset 'frey_faces': {path} is not a MATLAB file that scipy reads ({error})") from None
    faces = variables.get("ff")
    if faces is None:
        raise ValueError(f"dataset 'frey_faces': {path} has no variable 'ff' (it has "
                         f"{sorted(k for k in variables if not k.startswith('__'))}); expected frey_rawface.mat")
    if faces.ndim != 2 or faces.shape[0] != 28 * 20:
        raise ValueError(f"dataset 'frey_faces': {path}'s 'ff' must hold 560 x N pixels, got shape {faces.shape}")
    return (faces.T.reshape(-1, 28, 20, 1) / 255.0).astype(np.float32)


def load(split="train", batch_size=100, shuffle=None, seed=0, path=None):
    """Frey faces as float32 `[B, 28, 20, 1]`; splits "train" (first 1,765 frames), "test" (last 200), "all"."""
    faces = read(path)
    splits = {"train": faces[:-NUM_TEST], "test": faces[-NUM_TEST:], "all": faces}
    if split not in splits:
        raise ValueError(f"frey_faces splits are {sorted(splits)}, got {split!r}")
    ds = tf.data.Dataset.from_tensor_slices(splits[split])
    shuffle = split == "train" if shuffle is None else shuffle
    return pipeline.finish(ds, batch_size, shuffle, seed, cache=False, num_examples=len(faces))
