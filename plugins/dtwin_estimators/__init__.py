"""dtwin's built-in estimators (registered in the ``dtwin.estimators`` entry-point group)."""
