"""Whether a 32-byte Ed25519 public key is a point of small order (or no point at all).

A key whose point has order 1, 2, 4 or 8 (the identity, or any of the other torsion points, in their
canonical or non-canonical encodings) verifies signatures nobody made: with the identity as the key,
`R = identity, S = 0` is a valid signature on every message. OpenSSL loads and verifies such keys, so
they are refused here, at load time. The test is arithmetic, not a list: decode the point, multiply it
by the cofactor 8, and see whether the identity comes out. Pure integer maths; no secrets involved.
"""

from __future__ import annotations

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_MINUS_ONE = pow(2, (_P - 1) // 4, _P)
Point = tuple[int, int]
_IDENTITY: Point = (0, 1)


def _decode(raw: bytes) -> Point | None:
    """The affine point of an encoding (y reduced mod p, as lenient verifiers do); None if off-curve."""
    encoded = int.from_bytes(raw, "little")
    y = (encoded & ((1 << 255) - 1)) % _P
    sign = encoded >> 255
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        x = (x * _SQRT_MINUS_ONE) % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x & 1 != sign:
        x = (-x) % _P
    return x, y


def _add(first: Point, second: Point) -> Point:
    """Edwards addition on -x^2 + y^2 = 1 + d x^2 y^2 (complete: no special cases)."""
    (x1, y1), (x2, y2) = first, second
    product = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + product, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - product, _P - 2, _P) % _P
    return x3, y3


def weak_point_problem(raw: bytes) -> str | None:
    """None for a usable key; otherwise why the 32 bytes cannot be a trusted Ed25519 key."""
    if len(raw) != 32:
        return f"an Ed25519 public key has 32 bytes, this one has {len(raw)}"
    point = _decode(raw)
    if point is None:
        return "the key is not a point on the Ed25519 curve"
    for _ in range(3):
        point = _add(point, point)
    if point == _IDENTITY:
        return (
            "the key is a point of small order (such as the identity), with which signatures can be "
            "forged without any private key; it is never trusted"
        )
    return None
