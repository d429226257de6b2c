"""Experiment 1 (parameter table): our presets next to the paper's Table 1."""

from __future__ import annotations


def test_parameter_table_within_three_percent():
    from allegro_fm_bench.experiments import params

    r = params.run()
    assert [n for n, _, _ in r.rows] == ["FM64", "FM256", "FM512"]
    assert all(abs(o / p - 1) < 0.03 for _, o, p in r.rows)
    md = r.markdown()
    assert "| FM64 | 44,464 | 44,400 |" in md
