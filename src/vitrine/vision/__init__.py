"""Image intake and visual features.

Decode, foreground, color, texture, shape, pattern, and the CNN embedding.
"""
