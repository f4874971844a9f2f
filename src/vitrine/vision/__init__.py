"""Image intake and visual features: decode, foreground, color, texture, shape, pattern, CNN embedding."""
