"""Search by photo, for a declared purpose and case (hard rules 2 and 5)."""
