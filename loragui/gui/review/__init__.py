"""Reviewing a model's predictions image by image, and correcting the masks."""
