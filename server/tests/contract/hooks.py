"""Schemathesis hooks for decentcom's contract tests.

A public key is valid when it is the base58 encoding of 32 bytes that decompress to a point of
Ed25519 (api.md §1.3), which no JSON Schema pattern can say. The `ed25519-public-key` format of
the OpenAPI document is generated here from random bytes kept only when they are such a point.
"""

import schemathesis
from hypothesis import strategies as st

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def is_point(data: bytes) -> bool:
    """RFC 8032 §5.1.3 point decoding."""
    y = int.from_bytes(data, "little") & ((1 << 255) - 1)
    sign = data[31] >> 7
    if y >= P:
        return False
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    if (v * x * x - u) % P != 0:
        if (v * x * x + u) % P != 0:
            return False
        x = (x * SQRT_M1) % P
    return not (x == 0 and sign == 1)


def base58(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = ALPHABET[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


schemathesis.openapi.format("ed25519-public-key", st.binary(min_size=32, max_size=32).filter(is_point).map(base58))
