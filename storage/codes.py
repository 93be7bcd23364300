"""Short codes people read aloud and type on a phone: redemption, booking and invite codes.

No look-alikes (no 0/O, 1/I/L): 31 symbols, drawn with ``secrets`` so a code cannot be guessed
from another. Each table holding codes keeps them unique; callers normalise what was typed.
"""
from __future__ import annotations

import secrets

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_code(length: int) -> str:
    """A fresh random code of ``length`` symbols (8: about 8.5 × 10^11 codes; 6: about 8.9 × 10^8)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalise_code(text: str) -> str:
    """What a member or an operator typed, as a code: upper case, without spaces or dashes."""
    return "".join(text.split()).replace("-", "").upper()
