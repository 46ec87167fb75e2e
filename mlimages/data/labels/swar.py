"""The numpy fast path's word tricks: label tokens and key kinds read 16 bytes at a time.

SWAR ("SIMD within a register") on uint64 words holding a token's first 16 bytes, each step
one numpy op over all tokens of a slice small enough to stay in cache. The compiled scanner
does the same jobs byte by byte; this is the path of installs without it.
"""

from __future__ import annotations

import numpy as np

from mlimages.data.labels.segments import spans, take_segments

_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_ZEROS = np.uint64(0x3030303030303030)  # "00000000"
_F0 = np.uint64(0xF0F0F0F0F0F0F0F0)
_SIXES = np.uint64(0x0606060606060606)
_THREES = np.uint64(0x3333333333333333)
_COLONS = np.uint64(0x3A3A3A3A3A3A3A3A)
_DOTS = np.uint64(0x2E2E2E2E2E2E2E2E)
_BYTE_OF_BIT = np.uint64(0x0001020304050607)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
_POW10 = 10.0 ** np.arange(9)
_KEY_BYTES = 1 << 20  # key bytes classified per vectorised step
PAD_BYTES = 32  # readable bytes after a chunk, for the 3-word gathers


def head_words(
    words: np.ndarray, start: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The first 16 bytes at each ``start`` (two aligned words each), zeroed past ``length``.

    In-place steps: every fresh temporary of a slice's size costs page faults here.
    """
    q = start >> 3
    shift = (start & 7).view(np.uint64)
    shift <<= 3
    back = 64 - shift
    w1 = words[q]
    w1 >>= shift
    q += 1
    mid = words[q]
    w2 = mid >> shift
    mid <<= back
    w1 |= mid
    q += 1
    high = words[q]
    high <<= back
    w2 |= high
    bits = np.minimum(length, 16).view(np.uint64)
    bits <<= 3
    mask = np.left_shift(_ALL, bits, out=back)
    w1 &= np.invert(mask, out=mask)
    w2 &= np.right_shift(_ALL, np.subtract(128, bits, out=bits), out=mask)
    return w1, w2


def _first_byte(words: np.ndarray, pattern: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """Offset of the first byte equal to ``pattern``'s in each word (0 if none), and "none"."""
    x = words ^ pattern
    z = (x - _ONES) & ~x & _HIGH  # lowest set bit marks the first match exactly
    offset = ((((z & (0 - z)) >> 7) * _BYTE_OF_BIT) >> 56).view(np.int64)
    return offset, z == 0


def _digits(words: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, bool]:
    """Decimal value of the first ``n`` (1..8) bytes of each word, and whether all are digits."""
    n8 = (n << 3).view(np.uint64)
    high = _ALL << n8
    w = (words & ~high) | (_ZEROS & high)
    ok = bool(np.all(((w & _F0) | (((w + _SIXES) & _F0) >> 4)) == _THREES))
    d = (w - _ZEROS) << (64 - n8)  # right-align: the padding becomes leading zeros
    d = (d * 10 + (d >> 8)) & 0x00FF00FF00FF00FF
    d = (d * 100 + (d >> 16)) & 0x0000FFFF0000FFFF
    d = (d * 10000 + (d >> 32)) & 0xFFFFFFFF
    return d, ok


def _parse_tokens(
    w1: np.ndarray, w2: np.ndarray, length: np.ndarray, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Parse ``idx[:conf]`` tokens given as 16 zero-padded bytes; None if any is unusual."""
    colon, no_colon = _first_byte(w1, _COLONS)
    index_len = colon + length * no_colon
    if index_len.min() < 1 or index_len.max() > 8:
        return None
    indices, ok = _digits(w1, index_len)
    if not ok or (num_classes is not None and indices.max() >= num_classes):
        return None
    conf_len = length - colon - 1
    c8 = ((colon + 1) << 3).view(np.uint64)
    conf_word = (w1 >> c8) | (w2 << (64 - c8))
    bare = no_colon.any()
    if bare:  # "idx" alone: parse a dummy "0" and set 1.0 below
        conf_word[no_colon] = 0x30
        conf_len[no_colon] = 1
    if conf_len.min() < 1 or conf_len.max() > 8:
        return None
    dot, no_dot = _first_byte(conf_word, _DOTS)
    low = ~(_ALL << ((dot + 8 * no_dot) << 3).view(np.uint64))
    digit_word = (conf_word & low) | ((conf_word >> 8) & ~low)  # drop the dot
    n_digits = conf_len - 1 + no_dot
    if n_digits.min() < 1:
        return None
    value, ok = _digits(digit_word, n_digits)
    # value < 10**8 and 10**k are exact doubles, so one division rounds like float(text).
    confidences = value / _POW10[(conf_len - 1 - dot) * ~no_dot]
    if not ok or confidences.max() > 1.0:
        return None
    if bare:
        confidences[no_colon] = 1.0
    return indices.astype(np.int32), confidences.astype(np.float32)


class Vocabulary:
    """Direct-mapped cache of parsed label tokens.

    A list has ~C x (a few confidences) distinct tokens, so after the first slices nearly every
    token is a hit: one row gather and two compares instead of the full SWAR parse. Only tokens
    that ``_parse_tokens`` accepted get in, so a hit is as valid as a parse.
    """

    def __init__(self, num_classes: int | None, bits: int = 18) -> None:
        self.num_classes = num_classes
        self.shift = np.uint64(64 - bits)
        # Rows of (first word, second word, int32 index | float32 conf << 32, padding): one
        # cache line per lookup. A first word of 0 never matches a token.
        self.table = np.zeros((1 << bits, 4), dtype=np.uint64)

    def parse(self, w1: np.ndarray, w2: np.ndarray, length: np.ndarray) -> np.ndarray | None:
        slot = (((w1 ^ w2) * _MIX) >> self.shift).view(np.int64)
        rows = np.take(self.table, slot, axis=0)
        value = rows[:, 2].copy()
        miss = np.flatnonzero((rows[:, 0] != w1) | (rows[:, 1] != w2))
        if len(miss):
            parsed = _parse_tokens(w1[miss], w2[miss], length[miss], self.num_classes)
            if parsed is None:
                return None
            fresh = parsed[0].view(np.uint32).astype(np.uint64)
            fresh |= parsed[1].view(np.uint32).astype(np.uint64) << 32
            value[miss] = fresh
            slot = slot[miss]
            self.table[slot, 0] = w1[miss]
            self.table[slot, 1] = w2[miss]
            self.table[slot, 2] = fresh
        return value


def key_kind_codes(key_bytes: np.ndarray, key_offsets: np.ndarray, codes: np.ndarray) -> None:
    """Fill ``codes`` with each key's kind (0 file, 1 URL, 2 ImageNet), read from its first
    16 bytes; the numpy twin of the compiled ``key_kind_codes``."""
    for r0, r1 in spans(key_offsets, _KEY_BYTES):
        o0, o1 = int(key_offsets[r0]), int(key_offsets[r1])
        buf = np.zeros((o1 - o0 + PAD_BYTES) // 8 * 8, dtype=np.uint8)
        buf[: o1 - o0] = key_bytes[o0:o1]
        starts = key_offsets[r0:r1] - o0
        lengths = key_offsets[r0 + 1 : r1 + 1] - key_offsets[r0:r1]
        words = np.stack(head_words(buf.view(np.uint64), starts, lengths), axis=1)
        head = words.view(np.uint8)  # (keys, 16), zero past each key's end
        lower = head | 0x20
        digit = (head >= ord("0")) & (head <= ord("9"))
        alpha = (lower >= ord("a")) & (lower <= ord("z"))
        other = ~(alpha | digit | (head == ord("+")) | (head == ord("-")) | (head == ord(".")))
        # URL: a letter, then letters, digits or "+.-" up to the first other byte, "://".
        other = other.view(np.uint64)  # one 0/1 byte per column
        lo_first, lo_none = _first_byte(other[:, 0], _ONES)
        hi_first, _ = _first_byte(other[:, 1], _ONES)
        colon = np.minimum(lo_first + lo_none * (8 + hi_first), 13)
        at = np.arange(r1 - r0) * 16 + colon
        flat = head.reshape(-1)
        url = (
            alpha[:, 0]
            & (flat[at] == ord(":"))
            & (flat[at + 1] == ord("/"))
            & (flat[at + 2] == ord("/"))
        )
        # ImageNet: "n", 8 digits, "/", then a name without "/".
        digits = digit.view(np.uint64)
        imagenet = (
            (lengths >= 11)
            & (head[:, 0] == ord("n"))
            & (head[:, 9] == ord("/"))
            & ((digits[:, 0] >> 8) == 0x01010101010101)
            & ((digits[:, 1] & 1) == 1)
        )
        named = np.flatnonzero(imagenet)
        if len(named):
            tail_len = lengths[named] - 10
            tail = take_segments(buf, starts[named] + 10, tail_len) == ord("/")
            imagenet[named] = ~np.logical_or.reduceat(tail, np.cumsum(tail_len) - tail_len)
        codes[r0:r1] = np.where(url, 1, np.where(imagenet, 2, 0))
