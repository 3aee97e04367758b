"""Tests of the built-in object store and its S3 endpoint."""
