"""Throughput and quality benchmarks, and the independent judges they score with.

Benchmarks measure and report; they assert nothing.
"""
