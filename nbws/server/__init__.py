"""The nbws server: endpoints, the Jupyter extension and the standalone app."""
