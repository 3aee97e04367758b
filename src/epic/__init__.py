"""EPIC: a self-hostable HPC cloud platform implementing the EPIC API v2."""
