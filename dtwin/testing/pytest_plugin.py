"""dtwin's pytest plugin (registered under the ``pytest11`` entry point): fixtures for plugin
authors. Loading it imports nothing heavy; dtwin is imported when a fixture is used.

    def test_my_plugin(dtwin_check_plugin):
        from my_package import MyOperator
        dtwin_check_plugin(MyOperator)
"""

from __future__ import annotations

import pytest


@pytest.fixture
def dtwin_check_plugin():
    """:func:`dtwin.testing.check_plugin`, the plugin conformance kit."""
    from dtwin.testing import check_plugin

    return check_plugin


@pytest.fixture
def dtwin_benchmark_training_step(benchmark):
    """Time one optimizer step of a dtwin plugin with pytest-benchmark, as a member of a pair::

        def test_step(dtwin_benchmark_training_step, monkeypatch):
            dtwin_benchmark_training_step(MyOperator(), pair="my operator step", role="dtwin")

    ``role`` is 'dtwin' for the measured code, anything else for its peer in the same pair; the
    summary of ``dtwin bench`` prints their ratio and ``--compare`` guards it against a baseline.
    """

    def run(model, batch=None, *, pair: str, role: str = "dtwin", rounds: int = 10, warmup: int = 2):
        from dtwin.benchmarking import training_step

        step = training_step(model, batch)
        benchmark.extra_info.update(pair=pair, role=role)
        return benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=warmup)

    return run
