"""People: faces grouped into identities (clustering), named, merged and split by the operator."""
