"""Staff accounts, roles, API keys and who may do what (hard rule 3)."""
