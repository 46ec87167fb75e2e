"""mlimages: a reproduction of Tencent ML-Images as a notebook-driven study."""

import os as _os

# TensorFlow's C++ start-up banner (oneDNN, CPU features) buries our progress and errors.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
