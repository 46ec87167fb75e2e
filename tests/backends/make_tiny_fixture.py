"""Write tests/data/backends/: a tiny model saved by the TensorFlow backend, with its inputs
and TensorFlow's logits, for the other backends to load (run in the main environment:
`.venv/bin/python tests/backends/make_tiny_fixture.py`)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from mlimages.paper.model import PORTABLE_SEPARATOR, build_resnet

OUT = Path(__file__).resolve().parents[1] / "data" / "backends"


def main() -> None:
    assert keras.config.backend() == "tensorflow", "the fixture is TensorFlow's file"
    keras.utils.set_random_seed(0)
    model = build_resnet(5, blocks=(1, 1, 1, 1), width=4, separator=PORTABLE_SEPARATOR)
    rng = np.random.default_rng(0)
    for weight in model.non_trainable_weights:  # BN statistics that inference must use
        low = 0.5 if "variance" in weight.path else -0.5
        weight.assign(rng.uniform(low, 1.5, weight.shape).astype("float32"))
    images = rng.uniform(-1, 1, (3, 40, 40, 3)).astype("float32")
    OUT.mkdir(parents=True, exist_ok=True)
    model.save(OUT / "tiny-tf.keras")
    np.save(OUT / "inputs.npy", images)
    np.save(OUT / "logits.npy", np.asarray(model(images, training=False)))


if __name__ == "__main__":
    main()
