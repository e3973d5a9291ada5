"""Accountability to the regulator: generated records, the breach register, orders, retention, exports."""
