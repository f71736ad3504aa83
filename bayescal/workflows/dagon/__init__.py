"""Dagon et al.'s (2020) workflow: its context, stage functions and declared stage list."""
