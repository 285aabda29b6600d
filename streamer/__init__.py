"""streamer: a real-time speech streaming server."""

__version__ = "0.1.0"
