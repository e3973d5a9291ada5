"""Legal basis, purposes and jurisdiction: may this face be stored, and may this search reach it?"""
