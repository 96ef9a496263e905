"""What the command-line apps share: one-line errors with their exit status, quiet libraries, `key=value` options.

Imports nothing heavy: the apps check their flags first and import TensorFlow only after
(`quiet_libraries`), so a bad flag is reported in a fraction of a second.
"""

import ast
import os
import sys

from absl import app, flags, logging

from zoo.runs.errors import TrainingDiverged, UsageError


def parse_overrides(pairs):
    """`["latent_dim=50", "hidden_units=(200, 200)"]` -> `{"latent_dim": 50, "hidden_units": (200, 200)}`.

    Values are Python literals; anything that does not parse as one is kept as a string.
    """
    overrides = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--override expects key=value, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        overrides[key.strip()] = value
    return overrides


def quiet_libraries():
    """Silences TensorFlow's and TFDS's logs unless `--verbosity` (absl's flag) is given.

    With `--verbosity=0` (INFO) or higher every library log shows; with `--verbosity=-1`
    warnings and errors. TensorFlow's C++ start-up lines (CUDA probing on a machine without a
    GPU, oneDNN notes) are written to stderr before its log level applies, so by default the
    import runs with stderr muted.
    """
    if flags.FLAGS["verbosity"].present:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if flags.FLAGS.verbosity >= logging.INFO else "1")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    logging.set_verbosity(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tf.get_logger().setLevel("ERROR")


def run_app(main_fn, define_fn=None):
    """Runs an absl app whose flag errors, `UsageError`s and `TrainingDiverged` end in one line (exit status 2, 2
    and 1); `define_fn` defines its flags first (None: defined when its module loaded)."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            fail(f"{os.path.basename(argv[0])}: {error}", 2)

    def guarded(argv):
        try:
            if len(argv) > 1:
                raise UsageError(f"unexpected arguments {argv[1:]}")
            main_fn(argv)
        except UsageError as error:
            fail(f"{os.path.basename(sys.argv[0])}: {error}", 2)
        except TrainingDiverged as error:
            fail(f"{os.path.basename(sys.argv[0])}: training diverged: {error}", 1)

    if define_fn:
        define_fn()
    app.run(guarded, flags_parser=parse)


def fail(message, status):
    print(message, file=sys.stderr, flush=True)
    sys.exit(status)
