"""The global (Seiler) workflow: its declared stage list (``workflow``) and stage functions."""
