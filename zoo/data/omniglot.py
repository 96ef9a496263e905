"""Omniglot (Lake et al. 2015): preprocessing, alphabet-disjoint splits and few-shot episodes.

Sources, in order: TFDS `omniglot` when it is prepared in the TFDS data directory (or
`download=True`: TFDS downloads and prepares it there, e.g. in Colab), otherwise Lake's
archives read directly from a directory (`images_background.zip`, `images_evaluation.zip`,
`images_background_small1.zip`, `images_background_small2.zip`, whichever exist). Images are decoded and preprocessed once per process and kept in memory
as binary arrays; batches and episodes are drawn from them with `tf.data`.

Train/test split, by alphabet so that no test character is ever seen in training:
- alphabets of Lake's evaluation set (TFDS split "test", `images_evaluation.zip`) are the
  test set whenever any are present (the standard background/evaluation split);
- otherwise (e.g. only the two small background sets: 8 alphabets, 242 characters) every
  fourth alphabet in sorted name order (positions 3, 7, 11, ...) is held out. On the small
  sets that is Japanese_(katakana) and Tagalog: 64 test characters (20-way episodes fit),
  178 training characters in 6 alphabets;
- or an explicit `test_alphabets=[...]`.
"""

import os
import pathlib
import zipfile

import numpy as np
import tensorflow as tf

from zoo.data import episodes as episodes_lib
from zoo.data import pipeline

ORIGINAL_SIZE = 105
IMAGE_SIZES = (28, 26)
ARCHIVES = (
    "images_background.zip",
    "images_evaluation.zip",
    "images_background_small1.zip",
    "images_background_small2.zip",
)
_EVALUATION_ARCHIVE = "images_evaluation.zip"
SPLITS = ("train", "test", "all")
# Directories searched when no `path` is given: $OMNIGLOT_DIR, then the project's `../shared` copy.
_DEFAULT_DIRS = (
    os.environ.get("OMNIGLOT_DIR"),
    "../shared/datasets/omniglot",
    str(pathlib.Path(__file__).resolve().parents[3] / "shared" / "datasets" / "omniglot"),
)
_CACHE = {}


def preprocess(images, image_size=28, ink="dark"):
    """Turns 105x105 Omniglot drawings into the models' binary input, float32 `[..., S, S, 1]`.

    Strokes become 1 and background 0; the image is binarized at half intensity and
    downscaled by 4x4 max-pooling (Bornschein et al. 2017), which keeps thin strokes:
    `image_size=26` pools the 104x104 top-left crop (the paper's 26x26), `image_size=28`
    (default) pools the image padded with background to 112x112.

    Args:
        images: one image or a batch: a PNG file path, PNG bytes, a list of those, or an
            array `[105, 105]`, `[105, 105, C]`, `[N, 105, 105]` or `[N, 105, 105, C]`
            (C = 1, 3 or 4), uint8 in [0, 255], bool, or float in [0, 1].
        image_size: 28 or 26.
        ink: `"dark"` (default; Omniglot's black strokes on white) or `"light"`.

    Returns:
        float32 `[S, S, 1]` for one image, `[N, S, S, 1]` for a batch, values in {0, 1}.

    Example:

    >>> x = zoo.data.omniglot.preprocess("my_character.png")  # [28, 28, 1]
    >>> probabilities = vma.classify(x[None], memory, memory_labels)
    """
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size!r}")
    if ink not in ("dark", "light"):
        raise ValueError(f"ink must be 'dark' or 'light', got {ink!r}")
    images, single = _as_pixel_array(images)
    ink_mask = images < 0.5 if ink == "dark" else images >= 0.5
    x = tf.cast(ink_mask, tf.float32)[..., None]  # [N, 105, 105, 1]
    if image_size == 28:
        x = tf.pad(x, [[0, 0], [3, 4], [3, 4], [0, 0]])
    x = tf.nn.max_pool2d(x, ksize=4, strides=4, padding="VALID")
    return x[0] if single else x


def _as_pixel_array(images):
    """Decodes paths / PNG bytes and checks arrays; returns float32 `[N, 105, 105]` in [0, 1] and whether one image came."""
    single = isinstance(images, (str, bytes, os.PathLike))
    if single or (isinstance(images, (list, tuple)) and images and isinstance(images[0], (str, bytes, os.PathLike))):
        items = [images] if single else list(images)
        images = np.stack([_decode_png(item) for item in items])
    else:
        images = np.asarray(images)
        if images.ndim == 2 or (images.ndim == 3 and images.shape[:2] == (ORIGINAL_SIZE,) * 2 and images.shape[-1] in (1, 3, 4)):
            single, images = True, images[None]
        if images.ndim == 3:
            images = images[..., None]
    expected = f"[N, {ORIGINAL_SIZE}, {ORIGINAL_SIZE}, C] with C in (1, 3, 4)"
    if images.ndim != 4 or images.shape[1:3] != (ORIGINAL_SIZE, ORIGINAL_SIZE) or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Omniglot preprocessing expects {ORIGINAL_SIZE}x{ORIGINAL_SIZE} images ({expected}, or one image "
            f"without N), got shape {list(images.shape)}; resize other drawings to {ORIGINAL_SIZE}x{ORIGINAL_SIZE} first"
        )
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    elif images.dtype == bool:
        images = images.astype(np.float32)
    elif np.issubdtype(images.dtype, np.floating):
        if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
            raise ValueError(
                f"float images must hold finite values in [0, 1], got values in [{np.nanmin(images):g}, "
                f"{np.nanmax(images):g}]; pass uint8 [0, 255] or scale to [0, 1]"
            )
        images = images.astype(np.float32)
    else:
        raise ValueError(f"images must be uint8, bool or float, got dtype {images.dtype}")
    if images.shape[-1] == 4:
        images = images[..., :3]  # alpha is ignored: Omniglot PNGs are opaque
    if images.shape[-1] == 3:
        images = images @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
    return images[..., 0], single


def _decode_png(item):
    if not isinstance(item, bytes):
        with open(item, "rb") as f:
            item = f.read()
    try:
        return tf.io.decode_png(item, channels=1).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"could not decode a PNG image: {error.message.splitlines()[0]}") from None


# Reading the data -----------------------------------------------------------------


def read(split="train", image_size=28, path=None, data_dir=None, test_alphabets=None, download=False):
    """The images of a split as arrays (decoded once per process, then cached).

    Args:
        split: "train", "test" (held-out alphabets, see the module docstring) or "all".
        image_size: 28 or 26 (see `preprocess`).
        path: directory holding Lake's zip archives; default: TFDS `omniglot` if prepared
            in `data_dir` / $TFDS_DATA_DIR, else $OMNIGLOT_DIR, else `../shared/datasets/omniglot`.
        data_dir: TFDS data directory.
        test_alphabets: list of alphabet names to hold out instead of the default rule.
        download: bool, with `path=None`: let TFDS download and prepare `omniglot` in the data
            directory if it is not there (needs internet access); the archives are then not searched.

    Returns:
        dict of numpy arrays: `images` float32 `[N, S, S, 1]` in {0, 1}; `labels` int64 `[N]`,
        the global Omniglot character id (0..1622); `alphabets` int64 `[N]`, index into
        `alphabet_names` (all alphabets of the source, sorted).
    """
    if split not in SPLITS:
        raise ValueError(f"Omniglot split must be one of {SPLITS}, got {split!r}")
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size!r}")
    source = _load_source(image_size, path, data_dir, download)
    names = source["alphabet_names"]
    if test_alphabets is None:
        held_out = source["evaluation_alphabets"] or names[3::4]
    else:
        held_out = list(test_alphabets)
        unknown = sorted(set(held_out) - set(names))
        if unknown:
            raise ValueError(f"test_alphabets {unknown} are not Omniglot alphabets in this source; available: {names}")
    is_test = np.isin(source["alphabets"], [names.index(name) for name in held_out])
    keep = {"train": ~is_test, "test": is_test, "all": np.ones_like(is_test)}[split]
    if not keep.any():
        raise ValueError(f"Omniglot split {split!r} is empty with test alphabets {sorted(held_out)}")
    return {
        "images": source["images"][keep].astype(np.float32)[..., None],
        "labels": source["labels"][keep],
        "alphabets": source["alphabets"][keep],
        "alphabet_names": names,
        "test_alphabets": sorted(held_out),
    }


def _load_source(image_size, path, data_dir, download=False):
    if path is None:
        key = ("tfds", data_dir or os.environ.get("TFDS_DATA_DIR"), image_size)
        if key not in _CACHE:
            records = _read_tfds(data_dir, download)
            if records is not None:
                _CACHE[key] = _decode(records, image_size)
        if key in _CACHE:
            return _CACHE[key]
    directories = [path] if path is not None else [d for d in _DEFAULT_DIRS if d]
    for directory in directories:
        archives = [os.path.join(directory, name) for name in ARCHIVES if os.path.isfile(os.path.join(directory, name))]
        if archives:
            key = (tuple(os.path.realpath(a) for a in archives), image_size)
            if key not in _CACHE:
                _CACHE[key] = _decode(_read_archives(archives), image_size)
            return _CACHE[key]
    raise FileNotFoundError(
        f"dataset 'omniglot': no data found. TFDS 'omniglot' is not prepared in "
        f"{data_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets'}, and none of {list(ARCHIVES)} "
        f"is in {directories}. Fix: pass path= a directory holding Lake's archives "
        f"(https://github.com/brendenlake/omniglot/tree/master/python), set OMNIGLOT_DIR, or prepare TFDS 'omniglot'."
    )


def _read_tfds(data_dir, download=False):
    """Encoded records from TFDS `omniglot` (background = "train", evaluation = "test").

    None if not prepared and not `download`; with `download`, a failure raises `FileNotFoundError`.
    """
    import tensorflow_datasets as tfds

    root = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
    if not download and not os.path.isdir(os.path.join(root, "omniglot")):
        return None
    try:
        splits, info = tfds.load(
            "omniglot", split=["train", "test"], data_dir=data_dir, download=download, with_info=True,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
    except Exception as error:  # not prepared (or unreadable): fall back to the archives, unless asked to download
        if download:
            raise FileNotFoundError(
                f"dataset 'omniglot' could not be downloaded and prepared in {root} "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]}). Fix: run with internet access, "
                f"or pass path= a directory holding Lake's archives."
            ) from error
        return None
    names = info.features["alphabet"].names
    records = []
    for evaluation, ds in zip((False, True), splits):
        for example in ds.as_numpy_iterator():
            records.append((example["image"], names[example["alphabet"]], int(example["label"]), evaluation))
    return records


def _read_archives(archives):
    """Encoded records from Lake's zips; an image in several archives (the small sets overlap) is read once."""
    records, seen = [], set()
    for archive in archives:
        evaluation = os.path.basename(archive) == _EVALUATION_ARCHIVE
        with zipfile.ZipFile(archive) as zf:
            for member in sorted(zf.namelist()):
                parts = member.split("/")
                # <set>/<Alphabet>/character<NN>/<GLOBALID>_<DRAWER>.png; the file name is unique across Omniglot.
                if len(parts) != 4 or not parts[3].endswith(".png") or parts[3] in seen:
                    continue
                seen.add(parts[3])
                records.append((zf.read(member), parts[1], int(parts[3].split("_")[0]) - 1, evaluation))
    if not records:
        raise ValueError(f"dataset 'omniglot': the archives {archives} hold no <set>/<alphabet>/<character>/*.png images")
    return records


def _decode(records, image_size):
    encoded, alphabet_names, labels, evaluation = zip(*records)
    names = sorted(set(alphabet_names))
    ds = tf.data.Dataset.from_tensor_slices(list(encoded)).map(
        lambda png: tf.io.decode_png(png, channels=1), num_parallel_calls=tf.data.AUTOTUNE
    )
    images = np.concatenate(
        [preprocess(batch.numpy(), image_size).numpy() for batch in ds.batch(1024)]
    ).astype(np.uint8)[..., 0]
    return {
        "images": images,
        "labels": np.asarray(labels, np.int64),
        "alphabets": np.asarray([names.index(n) for n in alphabet_names], np.int64),
        "alphabet_names": names,
        "evaluation_alphabets": sorted({n for n, e in zip(alphabet_names, evaluation) if e}),
    }


# Pipelines -------------------------------------------------------------------------


def load(split="train", batch_size=100, shuffle=None, seed=0, with_labels=False, **kwargs):
    """Omniglot images as a batched `tf.data.Dataset` of float32 `[B, S, S, 1]` (with `with_labels`: `(x, label)`).

    `kwargs` go to `read` (`image_size`, `path`, `data_dir`, `test_alphabets`).
    """
    data = read(split, **kwargs)
    ds = tf.data.Dataset.from_tensor_slices((data["images"], data["labels"]) if with_labels else data["images"])
    shuffle = split != "test" if shuffle is None else shuffle
    return pipeline.finish(ds, batch_size, shuffle, seed, num_examples=len(data["labels"]))


def episodes(
    split="train", num_classes=8, num_targets=4, num_memory=4, num_episodes=None, seed=0,
    class_sampling="alphabet", with_labels=False, **kwargs,
):
    """Generative few-shot episodes (Bornschein et al. 2017, sec. 4.2) as a `tf.data.Dataset`.

    Each element holds `num_classes` distinct characters, `num_targets` target drawings per
    character and `num_memory` further drawings of each (disjoint from the targets) for the
    memory: a dict `{"x": [C*T, S, S, 1], "memory": [C*N, S, S, 1]}`, what `VMA.fit` takes;
    `with_labels=True` adds `labels` `[C*T]` and `memory_labels` `[C*N]` (int32
    episode-local classes 0..C-1). With
    `class_sampling="alphabet"` (default) each character's alphabet is drawn uniformly, so
    large alphabets do not dominate; `"character"` draws characters uniformly.

    `num_episodes=None` gives an endless stream for `fit(..., steps_per_epoch=...)`; an int
    gives that many episodes, the same ones on every pass (for evaluation). `kwargs` go to
    `read`.

    Example:

    >>> train = zoo.data.omniglot.episodes("train", num_classes=8, num_memory=4)
    >>> batch = next(iter(train))  # batch["x"]: [32, 28, 28, 1], batch["memory"]: [32, 28, 28, 1]
    >>> history = vma.fit(train, steps_per_epoch=100)
    """
    if class_sampling not in ("alphabet", "character"):
        raise ValueError(f"class_sampling must be 'alphabet' or 'character', got {class_sampling!r}")
    data = read(split, **kwargs)
    return episodes_lib.class_episodes(
        data["images"], data["labels"], groups=data["alphabets"] if class_sampling == "alphabet" else None,
        num_classes=num_classes, num_targets=num_targets, num_memory=num_memory,
        num_episodes=num_episodes, seed=seed, with_labels=with_labels, name=f"omniglot split {split!r}",
    )


def few_shot_episodes(split="test", ways=5, shots=1, queries_per_class=1, num_episodes=1000, seed=0, **kwargs):
    """N-way K-shot classification episodes: `ways` characters drawn uniformly from `split`.

    Elements are dicts `queries` `[ways*Q, S, S, 1]`, `query_labels`, `memory`
    `[ways*shots, S, S, 1]` (the labelled support set) and `memory_labels`, labels in
    0..ways-1; the same `num_episodes` episodes on every pass. Characters are drawn across
    all held-out alphabets (Vinyals et al. 2016 style), not within one alphabet.
    """
    ds = episodes(
        split, num_classes=ways, num_targets=queries_per_class, num_memory=shots,
        num_episodes=num_episodes, seed=seed, class_sampling="character", with_labels=True, **kwargs,
    )
    return ds.map(lambda e: {
        "queries": e["x"], "query_labels": e["labels"],
        "memory": e["memory"], "memory_labels": e["memory_labels"],
    })
