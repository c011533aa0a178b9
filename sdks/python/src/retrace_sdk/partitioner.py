"""Where Kafka puts a transaction: murmur2 of the key, as the Java client and the Rust SDK.

The Publisher sets librdkafka's `partitioner=murmur2_random`, which computes this; this module
is here to say where a key goes without a broker (and to test that it agrees)."""

from __future__ import annotations

from typing import Union

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: Union[bytes, str]) -> int:
    """Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as a signed 32-bit int."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length % 4
    if tail >= 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: Union[bytes, str], partitions: int) -> int:
    """`toPositive(murmur2(key)) % partitions`: the partition of a keyed message."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
