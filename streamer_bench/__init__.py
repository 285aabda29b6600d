"""Benchmarks and the realistic speech corpus for streamer (installed with the ``bench`` extra).

Nothing in the server package imports this one: it measures the server from outside, over its protocol.
"""
