"""The plugin's own test: dtwin's conformance kit through its pytest fixture."""

from dtwin_plugin_template import ConvOperator


def test_conformance(dtwin_check_plugin):
    results = dtwin_check_plugin(ConvOperator)
    assert set(results.values()) == {"ok"}
