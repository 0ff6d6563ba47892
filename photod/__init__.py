"""photod: a photo backup daemon that keeps every original safe by the 3-2-1 rule."""

__version__ = "0.1.0"
