"""Accountability to the regulator (hard rules 10, 11): enforcement orders, retention, source retirement,
the generated records (record of processing, DPIA), the breach register and the regulator export."""
