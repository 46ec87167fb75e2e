"""Images from the command line for tagging and features: paths or plain lists, preprocessed
exactly as evaluation preprocesses records (`mlimages.input.pipeline.eval_image`).

An argument is an image when its first bytes say so (JPEG, PNG, GIF, BMP, WebP), otherwise a
list: one path a line (anything after a tab, such as the authors' labels, is ignored; blank
lines and `#` comments are skipped), relative paths resolved against the list's folder, then
the current one. The authors' feature extractor crashed on such plain lists.

Ten crops: the shorter side scaled to `size / crop_fraction` (the same arithmetic as
`eval_image`), then the four corner squares and the centre square of `size`, and the five
mirrored; the centre one is `eval_image` itself.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF")
JPEG_MAGIC = b"\xff\xd8\xff"


def is_image(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(12)
    return head.startswith(IMAGE_MAGIC) and (not head.startswith(b"RIFF") or head[8:] == b"WEBP")


def image_paths(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Every image named by the arguments, in order: image files as given, lists expanded."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such image or image list")
        paths += [path] if is_image(path) else read_image_list(path)
    if not paths:
        raise ValueError(f"no images in {', '.join(map(str, items))}; expected image paths")
    return paths


def read_image_list(path: Path) -> list[Path]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: neither an image nor a text list of image paths") from None
    for number, line in enumerate(lines, start=1):
        entry = line.split("\t", 1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        candidates = [path.parent / entry, Path(entry)]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"{path}:{number}: {entry}: no such image (looked in {path.parent} and here)"
            )
        out.append(found)
    return out


def jpeg_bytes(path: Path) -> bytes:
    """The file's JPEG bytes; other formats are re-encoded (quality 95) so that every image
    goes through the same fused crop-and-decode as the records."""
    data = path.read_bytes()
    if data.startswith(JPEG_MAGIC):
        return data
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=95)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None
    return buffer.getvalue()


def ten_crops(jpeg, image_size: int, crop_fraction: float):
    """[10, S, S, 3] in [-1, 1]: centre, four corners, then the same five mirrored."""
    import tensorflow as tf

    from mlimages.input.pipeline import eval_image

    jpeg = tf.convert_to_tensor(jpeg)
    shape = tf.image.extract_jpeg_shape(jpeg)
    shorter = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
    side = tf.maximum(1, tf.cast(tf.round(shorter * crop_fraction), tf.int32))
    bottom, right = shape[0] - side, shape[1] - side
    crops = [eval_image(jpeg, image_size, crop_fraction)]  # the centre: evaluation's own input
    for top, left in ((0, 0), (0, right), (bottom, 0), (bottom, right)):
        window = tf.stack([top, left, side, side])
        image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
        crops.append(tf.image.resize(image, [image_size, image_size]) / 255.0 * 2.0 - 1.0)
    crops = tf.stack(crops)
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def crops_of(path: Path, image_size: int, crop_fraction: float, ten_crop: bool) -> np.ndarray:
    """[1 or 10, S, S, 3] float32 model inputs of one image file."""
    import tensorflow as tf

    from mlimages.input.pipeline import eval_image

    jpeg = jpeg_bytes(path)
    try:
        if ten_crop:
            return ten_crops(jpeg, image_size, crop_fraction).numpy()
        return eval_image(tf.constant(jpeg), image_size, crop_fraction).numpy()[None]
    except tf.errors.InvalidArgumentError as exc:
        raise ValueError(f"{path}: cannot decode ({exc.message.splitlines()[0]})") from None


def batches(
    paths: Sequence[Path], image_size: int, crop_fraction: float, ten_crop: bool, batch: int
) -> Iterator[np.ndarray]:
    """[images, crops, S, S, 3] blocks of at most `batch` images, in order."""
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        yield np.stack([crops_of(p, image_size, crop_fraction, ten_crop) for p in chunk])
