"""Numbers the course prints: rounded first, never a negative zero."""

import pandas as pd

from helpers.core.numbers import fixed, percent, rounded, signed


def test_a_value_that_rounds_to_zero_prints_without_a_minus():
    assert signed(-0.0002) == "+0.000" and fixed(-0.0002) == "0.000"
    assert signed(-0.0049) == "-0.005" and signed(0.0123) == "+0.012"
    assert fixed(-0.2) == "-0.200" and fixed(-0.00004, 4) == "0.0000"


def test_a_table_rounds_its_float_columns_and_drops_negative_zero():
    frame = pd.DataFrame({"gain": [-0.00002, 1.23456], "mode": ["a", "b"], "n": [1, 2]})
    text = rounded(frame, 3).to_markdown(index=False)
    assert "-0" not in text and "1.235" in text
    assert list(rounded(frame, 3)["n"]) == [1, 2]  # counts stay as they are


def test_a_small_share_keeps_a_significant_digit_and_only_zero_reads_zero():
    assert percent(0.0) == "0%" and percent(0.123) == "12.3%"
    assert percent(0.000008) == "0.0008%" and percent(0.0004) == "0.04%"


def test_an_interval_keeps_the_sign_of_a_bound_too_small_for_three_places():
    from helpers.core.numbers import signed_interval

    assert signed_interval(-0.0003, 0.0012) == "[-0.0003, +0.0012]"
    assert signed_interval(0.012, 0.05) == "[+0.012, +0.050]"
    assert signed_interval(0.0, 0.0) == "[+0.000, +0.000]"  # an exact zero stays short
