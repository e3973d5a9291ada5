"""Measuring recognition quality: the LFW protocols, the metrics, and the peer pipeline to compare with."""
