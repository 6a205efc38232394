"""TensorBoard event files, written without TensorBoard: scalars beside ``metrics.jsonl``.

The file format is TensorFlow's record file of ``Event`` protocol buffers: each record is its
length (uint64), the masked CRC-32C of the length, the bytes, and their masked CRC-32C; an event
holds the wall time, the step and a summary of (tag, float) values. ``tensorboard --logdir
OUT_DIR`` shows them (it is not needed to write them).

    >>> crc32c(b"123456789") == 0xE3069283
    True
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time

__all__ = ["EventWriter", "crc32c", "read_events"]


def _table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of TensorFlow's record files."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _event(wall_time: float, step: int, *, version: str | None = None, scalars: dict | None = None) -> bytes:
    data = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(int(step)))
    if version is not None:
        text = version.encode()
        data += _field(3, 2, _varint(len(text)) + text)
    if scalars:
        values = b""
        for tag, value in scalars.items():
            tag_bytes = str(tag).encode()
            value_msg = _field(1, 2, _varint(len(tag_bytes)) + tag_bytes) + _field(2, 5, struct.pack("<f", float(value)))
            values += _field(1, 2, _varint(len(value_msg)) + value_msg)
        data += _field(5, 2, _varint(len(values)) + values)
    return data


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked(crc32c(length))) + data + struct.pack("<I", _masked(crc32c(data)))


class EventWriter:
    """Appends scalar events to a new ``events.out.tfevents.<time>.<host>.<pid>`` file in ``folder``;
    each write is flushed, so TensorBoard sees it at once and a crash loses nothing written."""

    def __init__(self, folder: str | os.PathLike):
        os.makedirs(folder, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(os.fspath(folder), name)
        self._file = open(self.path, "ab")  # noqa: SIM115  closed by close()
        self._write(_event(time.time(), 0, version="brain.Event:2"))

    def _write(self, data: bytes) -> None:
        self._file.write(_record(data))
        self._file.flush()

    def scalars(self, step: int, values: dict) -> None:
        """One event at ``step`` holding every finite (tag, number) of ``values``."""
        finite = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if finite:
            self._write(_event(time.time(), step, scalars=finite))

    def close(self) -> None:
        self._file.close()


def _fields(data: bytes):
    """(field number, wire type, value) of a protocol buffer message (varint, 64-bit, bytes, 32-bit)."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire} is not used in event files")
        yield number, wire, value


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def read_events(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(step, {tag: value}) of each scalar event of a file, checking every record's checksums."""
    with open(path, "rb") as f:
        blob = f.read()
    out, pos = [], 0
    while pos < len(blob):
        header = blob[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack("<I", blob[pos + 8 : pos + 12])[0] != _masked(crc32c(header)):
            raise ValueError(f"{path}: a record's length fails its checksum at byte {pos}")
        data = blob[pos + 12 : pos + 12 + length]
        if struct.unpack("<I", blob[pos + 12 + length : pos + 16 + length])[0] != _masked(crc32c(data)):
            raise ValueError(f"{path}: a record fails its checksum at byte {pos}")
        pos += 16 + length
        step, values = 0, {}
        for number, _, value in _fields(data):
            if number == 2:
                step = value
            elif number == 5:
                for _, _, v in _fields(value):
                    parts = {n: x for n, _, x in _fields(v)}
                    values[parts[1].decode()] = struct.unpack("<f", parts[2])[0]
        if values:
            out.append((step, values))
    return out
