"""Pieces every API app shares: the error contract, pagination and permissions."""
