"""How the course prints a number: rounded first, and never as a negative zero.

`f"{-0.0002:+.3f}"` prints "-0.000", a sign that says nothing once the digits are gone; the
report's tables would show "-0" for the same value. Every reading and table that rounds goes
through these.
"""

from __future__ import annotations

import pandas as pd


def _rounded(value: float, digits: int) -> float:
    return round(float(value), digits) + 0.0  # -0.0 + 0.0 is 0.0


def signed(value: float, digits: int = 3) -> str:
    """`value` with its sign, to `digits` places: "+0.012", "-0.004", and "+0.000" for a value
    that rounds to zero from either side."""
    return f"{_rounded(value, digits):+.{digits}f}"


def signed_interval(low: float, high: float, digits: int = 3, most: int = 6) -> str:
    """"[low, high]" signed, with more places (up to `most`) while a bound that is not zero
    would print as zero: "[-0.0003, +0.0010]", never "[+0.000, +0.001]" for a negative bound."""
    def hidden(v: float, d: int) -> bool:
        return float(v) != 0 and _rounded(v, d) == 0

    while digits < most and (hidden(low, digits) or hidden(high, digits)):
        digits += 1
    return f"[{signed(low, digits)}, {signed(high, digits)}]"


def fixed(value: float, digits: int = 3) -> str:
    """`value` to `digits` places, "0.000" (not "-0.000") for a value that rounds to zero."""
    return f"{_rounded(value, digits):.{digits}f}"


def rounded(frame: pd.DataFrame, digits: int) -> pd.DataFrame:
    """`frame` with its float columns rounded to `digits` and no negative zero left."""
    out = frame.round(digits)
    floats = out.select_dtypes("float").columns
    out[floats] = out[floats] + 0.0
    return out


def percent(share: float) -> str:
    """A share as a percentage, one decimal; a share too small for that keeps its first
    significant digit ("0.0008%"), so only an exact zero prints as 0%."""
    value = float(share) * 100
    if value == 0:
        return "0%"
    if abs(value) < 0.05:
        return f"{value:.1g}%"
    return f"{value:.1f}%"
