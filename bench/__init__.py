"""Benchmarks that drive facetrail from outside, as its users do (`make bench-load`)."""
