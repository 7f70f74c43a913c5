"""Speak a text with a trained model and write a WAV file.

    python -m tasks.tts.predict "The green dog found the river." --out speech.wav
    python -m tasks.tts.predict --model runs/tts-default/model_int8.tflite "Hello there."
    python -m tasks.tts.predict --model saved_models/tts/1 "Hello there." --out hello.wav

A `.keras` or `.tflite` model runs the host loop (encode, decoder steps,
post-net) and Griffin-Lim here; a SavedModel does all of it in its graph.
Long texts are cut at sentence ends; a sentence longer than the model's
`max_text_length` is an error.
"""

import os

import numpy as np

import tasks.tts as task
from common import artifacts, cli
from common.errors import UserError
from tasks.tts import audio as audio_lib
from tasks.tts import inference


def speak(model_path, text, config_path=None, seed=0):
    """(waveform, sample rate) of `text` with the model at `model_path`."""
    if os.path.isdir(model_path):
        import tensorflow as tf

        if not os.path.exists(os.path.join(model_path, "saved_model.pb")):
            raise UserError(f"{model_path}: a folder but not a SavedModel")
        result = tf.saved_model.load(model_path).signatures["serving_default"](
            text=tf.constant([text]))
        length = int(result["length"].numpy()[0])
        return result["waveform"].numpy()[0][:length], int(result["sample_rate"].numpy()[0])
    cfg, _ = artifacts.load_run_config(task, model_path, config_path)
    raw = artifacts.load_raw_fn(task, model_path, cfg)
    return inference.speak(raw, cfg, text, seed=seed)


def run(argv=None):
    parser = cli.predict_parser(task, __doc__.splitlines()[0],
                                default_model="runs/tts-default/model.keras",
                                inputs_help="text to speak (several are joined)",
                                writes_files=False)
    parser.add_argument("--out", default="speech.wav", help="WAV file to write")
    parser.add_argument("--seed", type=int, default=0, help="pre-net dropout seed")
    args = parser.parse_args(argv)
    if not os.path.exists(args.model):
        raise UserError(f"{args.model}: model not found (train one with "
                        "`python -m tasks.tts.train`, or pass --model)")
    text = " ".join(args.inputs)
    waveform, rate = speak(args.model, text, args.config, args.seed)
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    audio_lib.write_wav(args.out, waveform, rate)
    seconds = len(waveform) / rate
    print(f"{args.out}: {seconds:.2f} s at {rate} Hz, peak {float(np.abs(waveform).max()):.2f}")
    return args.out


def main(argv=None):
    return cli.command(run, argv)


if __name__ == "__main__":
    main()
