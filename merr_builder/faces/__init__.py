"""Faces, facial action units and the emotional peak frame."""
