"""mlimages: a reproduction of Tencent ML-Images as a notebook-driven study."""

__version__ = "0.1.0"
