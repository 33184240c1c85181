"""curriclab: tested, fast implementations of methods that decide what a network learns, and
when."""

__version__ = "0.1.0"
