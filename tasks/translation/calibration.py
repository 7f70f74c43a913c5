"""INT8 calibration for the two edge parts.

The generator yields `("encode", {"source_ids"})` for a training sentence,
then `("decode_step", {...})` for each of its target positions, teacher
forced: the float encoder gives the cross cache, the float decoder step the
self-attention cache of the next position. So every tensor of both parts is
calibrated on the values it takes while translating real sentences.
"""

import numpy as np
import tensorflow as tf

from common.errors import UserError
from tasks.translation import model as model_lib


def representative_dataset(splits, cfg, edge=None):
    if not isinstance(edge, dict):
        raise UserError("translation calibration needs the float edge parts "
                        "{'encode', 'decode_step'} (common.pipeline passes them)")
    wanted = cfg.export.representative_samples
    # Graph functions: the eager Keras call costs ~10x more per step.
    encode = tf.function(lambda inputs: edge["encode"](inputs, training=False))
    step = tf.function(lambda inputs: edge["decode_step"](inputs, training=False))
    source = splits.calibration if splits.calibration is not None else splits.val

    def generator():
        produced = 0
        for inputs, _ in source:
            source_ids = np.asarray(inputs["source_ids"], np.int32)
            decoder_ids = np.asarray(inputs["decoder_ids"], np.int32)
            for row in range(len(source_ids)):
                if produced >= wanted:
                    return
                sentence = source_ids[row:row + 1]
                yield "encode", {"source_ids": sentence}
                cross_cache = np.asarray(encode(sentence)["cross_cache"])
                cache = np.zeros((1,) + model_lib.cache_shape(cfg, cfg.model.max_target_length),
                                 np.float32)
                length = int(np.count_nonzero(decoder_ids[row]))
                for position in range(length):
                    feed = {"token": decoder_ids[row:row + 1, position:position + 1],
                            "index": np.full((1, 1), position, np.int32),
                            "self_cache": cache, "cross_cache": cross_cache,
                            "source_ids": sentence}
                    yield "decode_step", feed
                    cache = np.asarray(step(feed)["self_cache"])
                produced += 1
        if produced == 0:
            raise UserError("no training sentences to calibrate INT8 with")
    return generator
