import pytest

from earlyexp.harness.stats import wilson_interval


def test_wilson_known_values():
    # 8/10 successes: the Wilson 95% interval is about [0.490, 0.943]
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.0714, abs=1e-3)
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and lo == pytest.approx(0.9286, abs=1e-3)


def test_wilson_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="Expect"):
        wilson_interval(5, 3)
