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
