"""Accountability to the regulator: enforcement orders, retention, source retirement (hard rules 10, 11)."""
