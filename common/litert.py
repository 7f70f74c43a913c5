"""Run a `.tflite` model: batches in, batches out, quantization hidden.

The runtime is ai-edge-litert (LiteRT); older installs fall back to
tflite_runtime and then to tf.lite.
"""

import re
import statistics
import time

import numpy as np

from common import quiet


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except ImportError:
        import tensorflow as tf
        return tf.lite.Interpreter


def _new_interpreter(path, num_threads, delegates):
    cls = interpreter_class()
    kwargs = {}
    if not delegates:
        module = __import__(cls.__module__, fromlist=["OpResolverType"])
        resolver = getattr(module, "OpResolverType", None)
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = \
                resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with quiet.captured_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
        return cls(model_path=str(path), num_threads=num_threads, **kwargs)


def _allocate(interpreter, signature=None):
    """Allocates the main graph, or one signature's subgraph (a signature
    runner allocates its subgraph only when called; the per-subgraph
    AllocateTensors has no public name), so that a graph XNNPACK cannot
    build fails here rather than at its first call."""
    with quiet.captured_stderr():
        if signature is None:
            interpreter.allocate_tensors()
            return
        index = getattr(interpreter.get_signature_runner(signature), "_subgraph_index", None)
        wrapper = getattr(interpreter, "_interpreter", None)
        if wrapper is not None and index is not None:
            wrapper.AllocateTensors(index)


def make_interpreter(path, num_threads=2, delegates=True):
    """An allocated interpreter; `delegates=False` keeps the plain op graph
    (XNNPACK otherwise replaces ops with DELEGATE nodes in the op list)."""
    interpreter = _new_interpreter(path, num_threads, delegates)
    try:
        _allocate(interpreter)
        for signature in interpreter.get_signature_list():
            _allocate(interpreter, signature)
    except RuntimeError:
        # XNNPACK cannot build some int8 graphs (an unrolled int8 BiLSTM:
        # "failed to create XNNPACK runtime"); the built-in kernels can.
        if not delegates:
            raise
        return make_interpreter(path, num_threads, delegates=False)
    return interpreter


def _quantize(values, details):
    scale, zero_point = details["quantization"]
    dtype = details["dtype"]
    if np.issubdtype(dtype, np.integer) and scale > 0 and \
            np.issubdtype(np.asarray(values).dtype, np.floating):
        info = np.iinfo(dtype)
        values = np.round(np.asarray(values) / scale + zero_point)
        return np.clip(values, info.min, info.max).astype(dtype)
    return np.asarray(values).astype(dtype)


def _dequantize(values, details):
    scale, zero_point = details["quantization"]
    if np.issubdtype(values.dtype, np.integer) and scale > 0 and \
            details["dtype"] in (np.int8, np.uint8, np.int16):
        return (values.astype(np.float32) - zero_point) * scale
    return values


class LiteRTModel:
    """A `.tflite` file as a batch function: `outputs = model(inputs)`.

    The file has batch size 1 (edge models are fixed-shape); a batch is run
    one example at a time. Inputs are a numpy array, or a dict keyed by the
    Keras input names; outputs are an array for one output, a list in the
    Keras model's output order for several.
    """

    def __init__(self, path, num_threads=2, signature=None, interpreter=None):
        self.path = str(path)
        self.interpreter = interpreter or make_interpreter(path, num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        if signature is not None and signature not in signatures:
            raise ValueError(f"{self.path}: no signature {signature!r}; it has "
                             f"{sorted(signatures)}")
        self.signature_key = signature or ("serve" if "serve" in signatures
                                           else next(iter(signatures)))
        self.runner = self.interpreter.get_signature_runner(self.signature_key)
        self.input_details = self.runner.get_input_details()
        self.output_details = self.runner.get_output_details()
        self.input_names = sorted(self.input_details)
        self.output_names = sorted(
            self.output_details,
            key=lambda n: int(re.findall(r"\d+$", n)[0]) if re.findall(r"\d+$", n) else 0,
        )

    def _feed(self, inputs, index):
        if isinstance(inputs, dict):
            missing = [name for name in self.input_names if name not in inputs]
            if missing:
                raise ValueError(
                    f"{self.path}: inputs {missing} missing; got {sorted(inputs)}"
                )
            chosen = {name: inputs[name] for name in self.input_names}
        else:
            arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            if len(arrays) != len(self.input_names):
                raise ValueError(
                    f"{self.path}: expects {len(self.input_names)} inputs "
                    f"({self.input_names}), got {len(arrays)}"
                )
            chosen = dict(zip(self.input_names, arrays))
        return {
            name: _quantize(np.asarray(value)[index:index + 1], self.input_details[name])
            for name, value in chosen.items()
        }

    def run_one(self, inputs, index=0):
        raw = self.runner(**self._feed(inputs, index))
        return [_dequantize(raw[name], self.output_details[name]) for name in self.output_names]

    def __call__(self, inputs):
        first = next(iter(inputs.values())) if isinstance(inputs, dict) else (
            inputs[0] if isinstance(inputs, (list, tuple)) else inputs)
        batch = int(np.asarray(first).shape[0])
        per_example = [self.run_one(inputs, index) for index in range(batch)]
        outputs = [np.concatenate([example[k] for example in per_example], axis=0)
                   for k in range(len(self.output_names))]
        return outputs[0] if len(outputs) == 1 else outputs

    def median_latency_ms(self, inputs, repeats=30, warmup=3):
        """Median wall time of one batch-1 call, in milliseconds."""
        feed = self._feed(inputs, 0)
        for _ in range(warmup):
            self.runner(**feed)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.runner(**feed)
            times.append((time.perf_counter() - start) * 1000.0)
        return statistics.median(times)


def load(path, num_threads=2):
    """A `.tflite` as a raw function: one `LiteRTModel`, or {signature:
    LiteRTModel} for a file with several signatures (an encoder and a decoder
    step driven by a host loop); the signatures share one interpreter."""
    interpreter = _new_interpreter(path, num_threads, delegates=True)
    signatures = list(interpreter.get_signature_list())
    if len(signatures) <= 1:  # its one signature is the main graph
        try:
            _allocate(interpreter)
        except RuntimeError:  # as in make_interpreter
            interpreter = make_interpreter(path, num_threads, delegates=False)
        return LiteRTModel(path, interpreter=interpreter)
    models, plain = {}, None
    for key in signatures:
        try:
            _allocate(interpreter, key)
            models[key] = LiteRTModel(path, signature=key, interpreter=interpreter)
        except RuntimeError:
            # XNNPACK cannot build this signature (the int8 unrolled BiLSTM
            # of TTS's encoder): the built-in kernels run it, and the other
            # signatures keep XNNPACK (one fallback for the whole file made
            # the TTS decoder step ten times slower).
            plain = plain or make_interpreter(path, num_threads, delegates=False)
            models[key] = LiteRTModel(path, signature=key, interpreter=plain)
    return models
