"""Reusable console widgets and modal dialogs."""
