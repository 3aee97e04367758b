"""The built-in S3-compatible endpoint in front of the local object store."""
