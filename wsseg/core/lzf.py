"""LZF (liblzf) block compression, as used by PCD ``binary_compressed`` data, in plain Python.

Stream format: a control byte ``c``; ``c < 32`` starts a literal run of ``c + 1`` bytes;
otherwise it is a back reference of length ``(c >> 5) + 2`` (``7`` means "add the next byte")
at distance ``((c & 31) << 8) + next_byte + 1`` behind the output end.  References may overlap
their own output (run-length style).

Decompression handles a 640x480 PCD frame (~6 MB out) in about a third of a second.
Compression is a greedy hash matcher meant for writing modest files; it is pure Python
and compresses roughly 1-3 MB/s.
"""

from __future__ import annotations

_MAX_LITERAL = 32
_MAX_OFFSET = 1 << 13
_MAX_MATCH = 264  # 2 + 7 + 255


class LZFError(ValueError):
    """A compressed stream is corrupt or does not decompress to the announced size."""


def lzf_decompress(src: bytes | bytearray | memoryview, expected_size: int) -> bytes:
    """Decompress one LZF block; raise ``LZFError`` unless it yields exactly ``expected_size`` bytes."""
    src = bytes(src)
    out = bytearray()
    ip = 0
    n = len(src)
    while ip < n:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:
            end = ip + ctrl + 1
            if end > n:
                raise LZFError(f"literal run at input byte {ip - 1} runs past the end of the stream ({n} bytes)")
            out += src[ip:end]
            ip = end
            continue
        length = ctrl >> 5
        if length == 7:
            if ip >= n:
                raise LZFError(f"back reference at input byte {ip - 1} is cut off")
            length += src[ip]
            ip += 1
        if ip >= n:
            raise LZFError(f"back reference at input byte {ip - 1} is cut off")
        ref = len(out) - ((ctrl & 0x1F) << 8) - src[ip] - 1
        ip += 1
        if ref < 0:
            raise LZFError(f"back reference at input byte {ip - 2} points {-ref} bytes before the start of the output")
        length += 2
        if ref + length <= len(out):
            out += out[ref:ref + length]
        else:  # overlapping reference: the pattern repeats
            pattern = out[ref:]
            out += (pattern * (length // len(pattern) + 1))[:length]
        if len(out) > expected_size:
            break
    if len(out) != expected_size:
        raise LZFError(f"stream decompresses to {len(out)} bytes, header announces {expected_size}")
    return bytes(out)


def lzf_compress(src: bytes | bytearray | memoryview) -> bytes:
    """Compress ``src`` into one LZF block (greedy, 3-byte hash of the last occurrence)."""
    src = bytes(src)
    n = len(src)
    out = bytearray()
    last: dict[bytes, int] = {}
    literal_start = 0
    ip = 0

    def flush_literals(end: int) -> None:
        start = literal_start
        while start < end:
            run = min(_MAX_LITERAL, end - start)
            out.append(run - 1)
            out.extend(src[start:start + run])
            start += run

    while ip + 2 < n:
        key = src[ip:ip + 3]
        ref = last.get(key)
        last[key] = ip
        if ref is None or ip - ref > _MAX_OFFSET:
            ip += 1
            continue
        limit = min(_MAX_MATCH, n - ip)
        length = 3
        while length < limit and src[ref + length] == src[ip + length]:
            length += 1
        flush_literals(ip)
        offset = ip - ref - 1
        code = length - 2
        if code < 7:
            out.append((code << 5) | (offset >> 8))
        else:
            out.append((7 << 5) | (offset >> 8))
            out.append(code - 7)
        out.append(offset & 0xFF)
        # index a few positions inside the match so later data can refer into it
        for k in range(ip + 1, min(ip + length, n - 2), max(1, length // 4)):
            last[src[k:k + 3]] = k
        ip += length
        literal_start = ip
    flush_literals(n)
    return bytes(out)
