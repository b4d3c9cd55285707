"""Encoders for TFLite-Micro's `TFLM_DECODE` operator: pruned and Huffman-coded
tensors that the device decodes into RAM before the op that reads them.

The `tflite-micro` runtime decodes three formats (its `decode_state_*.cc`
kernels); its Python compressor writes only the look-up-table one. These are
the encoders for the other two, written from the kernels' source:

- **Prune** (`encode_prune`, decode type 2): one bit per element, most
  significant bit first in C order, set where the element is kept; the kept
  elements follow the 16-byte header raw. Pruned positions decode to the
  tensor's zero point (one per channel for int8 tensors quantized along their
  first or last axis).
- **Huffman** (`encode_huffman`, decode type 1): int8 or int16 elements as
  Huffman codewords, a bit stream read in big-endian 32-bit words, decoded
  through multi-level tables of 16-bit (int8) or 32-bit entries. Each table
  level reads at most 15 bits; a symbol costs at least one bit.

Both are pure functions of the values: they return the encoded tensor's bytes
and the ancillary tensor's bytes (header + tables or kept values), which
`compress_micro` installs with the `tflite-micro` package's DECODE inserter.

Example:

```python
import numpy as np
from tflite_export import encodings

w = np.zeros((64, 32), np.int8)
w[::4, ::3] = 5
pruned = encodings.encode_prune(w)
coded = encodings.encode_huffman(w)
pruned.size, coded.size, w.nbytes          # e.g. (432, 292, 2048)
```
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools

import numpy as np

__all__ = ["Encoded", "HUFFMAN", "PRUNE", "encode_huffman", "encode_prune", "huffman_dtypes",
           "prune_dtypes"]

PRUNE = 2
HUFFMAN = 1
_HEADER = 16
_VERSION = 1
# Table levels read at most this many bits: an entry's 4-bit count must hold
# the bits a symbol uses at its level.
_MAX_LEVEL_BITS = 15


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One encoded tensor: what replaces its data, and the ancillary tensor
    (16-byte header, then tables or kept values) the DECODE op reads."""

    method: str
    encoded: bytes
    ancillary: bytes

    @property
    def size(self) -> int:
        return len(self.encoded) + len(self.ancillary)


def prune_dtypes() -> tuple[type, ...]:
    """Element types the Prune decoder writes (bool and float32 through their bits)."""
    return (np.bool_, np.int8, np.int16, np.int32, np.int64, np.float32)


def huffman_dtypes() -> tuple[type, ...]:
    """Element types the Huffman decoder writes."""
    return (np.int8, np.int16)


def _header(kind: int, specific: bytes) -> bytes:
    header = bytearray(_HEADER)
    header[0], header[1] = kind, _VERSION
    header[4:4 + len(specific)] = specific
    return bytes(header)


def _check_dtype(values: np.ndarray, allowed: tuple[type, ...], what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.type not in allowed:
        names = ", ".join(np.dtype(t).name for t in allowed)
        raise ValueError(f"{what} encodes {names} tensors; received {values.dtype.name}.")
    return values


# ----------------------------------------------------------------------- Prune
def encode_prune(values: np.ndarray, zero_points=0, axis: int = 0) -> Encoded:
    """Prune-encode `values`: a bit per element (1 = kept) and the kept values.

    Args:
        values: the tensor, in one of `prune_dtypes()`.
        zero_points: what pruned positions decode to: one value, or one per
            channel along `axis` (int8 only; other types decode to 0).
        axis: the channel axis of per-channel zero points: 0 or the last,
            as TFLite-Micro's decoder reads them (the tensor's quantized
            dimension).

    Raises:
        ValueError: for an unsupported element type, non-zero zero points on a
            type other than int8, or a channel axis the decoder cannot read.
    """
    values = _check_dtype(values, prune_dtypes(), "Prune")
    zeros = np.atleast_1d(np.asarray(zero_points, np.int64))
    if values.dtype != np.int8 and np.any(zeros != 0):
        raise ValueError("TFLite-Micro's Prune decoder needs zero points of 0 for "
                         f"{values.dtype.name} tensors; received {zeros.tolist()}.")
    if zeros.size > 1:
        axis = axis % values.ndim
        if axis not in (0, values.ndim - 1):
            raise ValueError(f"Per-channel zero points must lie on axis 0 or the last axis; "
                             f"received axis {axis} of a {values.ndim}-d tensor.")
        if values.shape[axis] != zeros.size:
            raise ValueError(f"{zeros.size} zero points for {values.shape[axis]} channels "
                             f"on axis {axis}.")
        shape = [1] * values.ndim
        shape[axis] = zeros.size
        # The decoder keeps one zero point unless some are non-zero.
        fill = zeros.reshape(shape) if np.any(zeros != 0) else np.zeros(shape, np.int64)
    else:
        fill = zeros.reshape(())
    # Compare stored bits: -0.0 is kept, as it differs from the decoded 0.
    bits = values.view(np.int32) if values.dtype == np.float32 else values
    if values.dtype == np.bool_:
        bits = values.view(np.int8)
    kept = np.broadcast_to(bits != fill.astype(bits.dtype), values.shape)
    mask = np.packbits(kept.reshape(-1), bitorder="big").tobytes()
    kept_values = np.ascontiguousarray(values[kept]).astype(values.dtype.newbyteorder("<"))
    return Encoded("prune", mask, _header(PRUNE, bytes([_VERSION])) + kept_values.tobytes())


# --------------------------------------------------------------------- Huffman
def _code_lengths(counts: dict[int, int]) -> dict[int, int]:
    """Huffman code length of each symbol (a lone symbol gets 1 bit)."""
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    order = itertools.count()
    heap = [(n, next(order), [s]) for s, n in sorted(counts.items())]
    heapq.heapify(heap)
    lengths = dict.fromkeys(counts, 0)
    while len(heap) > 1:
        n1, _, s1 = heapq.heappop(heap)
        n2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (n1 + n2, next(order), s1 + s2))
    return lengths


def _canonical(lengths: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Canonical codewords: symbol -> (code, length)."""
    codes, code, previous = {}, 0, 0
    for symbol, length in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= length - previous
        codes[symbol] = (code, length)
        code += 1
        previous = length
    return codes


@dataclasses.dataclass
class _Table:
    width: int
    entries: list  # ("symbol", value, bits) | ("table", _Table) | None
    start: int = 0


def _build_table(codes: list[tuple[int, int, int]], width: int, sub_cap: int) -> _Table:
    """A table level reading `width` bits for `codes` [(symbol, code, bits
    left)], with sub-tables of at most `sub_cap` bits for longer codes."""
    entries: list = [None] * (1 << width)
    longer: dict[int, list] = {}
    for symbol, code, left in codes:
        if left <= width:
            first = code << (width - left)
            for i in range(first, first + (1 << (width - left))):
                entries[i] = ("symbol", symbol, left)
        else:
            rest = left - width
            longer.setdefault(code >> rest, []).append((symbol, code & ((1 << rest) - 1), rest))
    for index, group in longer.items():
        sub_width = min(max(left for _, _, left in group), sub_cap)
        entries[index] = ("table", _build_table(group, sub_width, sub_cap))
    return _Table(width, entries)


def _layout(root: _Table) -> list[_Table]:
    """Tables in storage order (each sub-table after its parent), with starts."""
    tables, position, i = [root], 0, 0
    while i < len(tables):
        table = tables[i]
        table.start = position
        position += len(table.entries)
        tables += [e[1] for e in table.entries if e is not None and e[0] == "table"]
        i += 1
    return tables


def _pack_tables(tables: list[_Table], wide: bool, dtype: np.dtype) -> bytes | None:
    """The tables' entries as 16- or 32-bit words, or None when an offset does
    not fit a 16-bit entry's 11 bits."""
    found, count_shift, value_mask = ((1 << 31, 27, (1 << 27) - 1) if wide
                                      else (1 << 15, 11, (1 << 11) - 1))
    symbol_mask = (1 << (8 * dtype.itemsize)) - 1
    words = []
    for table in tables:
        for i, entry in enumerate(table.entries):
            if entry is None:  # a code no symbol uses (only a lone symbol's table)
                words.append(0)
            elif entry[0] == "symbol":
                words.append(found | (entry[2] << count_shift) | (entry[1] & symbol_mask))
            else:
                offset = entry[1].start - (table.start + i)
                if offset > value_mask:
                    return None
                words.append(((entry[1].width - 1) << count_shift) | offset)
    return np.asarray(words, "<u4" if wide else "<u2").tobytes()


def _bit_stream(symbols: np.ndarray, codes: dict[int, tuple[int, int]]) -> bytes:
    """Codewords of `symbols`, most significant bit first, padded to whole
    32-bit words plus one more (the decoder reads a level's bits ahead)."""
    lookup_code = np.zeros(1 << 16, np.uint32)
    lookup_bits = np.zeros(1 << 16, np.int64)
    for symbol, (code, length) in codes.items():
        lookup_code[symbol & 0xFFFF] = code
        lookup_bits[symbol & 0xFFFF] = length
    keys = symbols.astype(np.int64) & 0xFFFF
    lengths = lookup_bits[keys]
    words = lookup_code[keys]
    max_len = int(lengths.max())
    # Expand each codeword into its bits (MSB first), then drop the padding.
    shifts = np.arange(max_len - 1, -1, -1)
    all_bits = (words[:, None] >> shifts[None, :]) & 1
    valid = shifts[None, :] < lengths[:, None]
    stream = all_bits[valid].astype(np.uint8)
    total = (len(stream) + 31) // 32 * 32 + 32
    stream = np.concatenate([stream, np.zeros(total - len(stream), np.uint8)])
    return np.packbits(stream, bitorder="big").tobytes()


def encode_huffman(values: np.ndarray) -> Encoded:
    """Huffman-code an int8 or int16 tensor for TFLite-Micro's decoder.

    The decode tables are as small as this encoder finds them: every first-level
    width up to the longest codeword (at most 15 bits) and a few sub-table
    widths are tried, with 16-bit entries for int8 where their offsets fit.

    Raises:
        ValueError: for a type other than int8 or int16, or an empty tensor.
    """
    values = _check_dtype(values, huffman_dtypes(), "Huffman")
    if values.size == 0:
        raise ValueError("Huffman cannot encode an empty tensor.")
    flat = values.reshape(-1)
    symbols, counts = np.unique(flat, return_counts=True)
    codes = _canonical(_code_lengths(dict(zip(symbols.tolist(), counts.tolist()))))
    longest = max(length for _, length in codes.values())
    items = [(symbol, code, length) for symbol, (code, length) in codes.items()]
    best = None
    for width in range(1, min(longest, _MAX_LEVEL_BITS) + 1):
        for sub_cap in sorted({2, 4, 6, 8, min(longest - width, _MAX_LEVEL_BITS)}):
            if sub_cap < 1 or (width == longest and sub_cap != 2):
                continue
            tables = _layout(_build_table(items, width, sub_cap))
            for wide in ((False, True) if values.dtype == np.int8 else (True,)):
                packed = _pack_tables(tables, wide, values.dtype)
                if packed is not None and (best is None or len(packed) < len(best[0])):
                    best = (packed, width, wide)
                    break
    packed, width, wide = best
    flags = ((width - 1) << 4) | int(wide)
    ancillary = _header(HUFFMAN, bytes([_VERSION, flags])) + packed
    return Encoded("huffman", _bit_stream(flat, codes), ancillary)
