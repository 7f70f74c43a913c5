"""Commands print for people: TensorFlow's start-up and converter chatter is
hidden unless `--verbose` is on the command line.

`quiet_tensorflow()` must run before TensorFlow is first imported: the C++
logger reads TF_CPP_MIN_LOG_LEVEL once, and the CUDA/oneDNN notices are
written to stderr before any logging setting applies, so it imports
TensorFlow itself with stderr captured. `tasks/__init__.py` calls it.
"""

import contextlib
import os
import sys
import tempfile


def verbose_requested(argv=None):
    return "--verbose" in (sys.argv if argv is None else argv)


def quiet_tensorflow(argv=None):
    """Hide TensorFlow's C++ log lines (CUDA probes, oneDNN notices) and
    Python warnings unless --verbose; an explicit TF_CPP_MIN_LOG_LEVEL wins."""
    if verbose_requested(argv):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # absl (used by TFDS and the converter) logs warnings to stderr.
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if "tensorflow" not in sys.modules:
        with captured_stderr():
            import tensorflow as tf
        tf.get_logger().setLevel("ERROR")


@contextlib.contextmanager
def captured_stderr(verbose=False):
    """Send file descriptor 2 to a temporary file while the block runs (the
    LiteRT converter writes MLIR notes straight to it); on an error the
    captured text is printed so that nothing needed for a diagnosis is lost."""
    if verbose or verbose_requested():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", "replace")[-4000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
