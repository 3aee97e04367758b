"""Compute backends: where job steps run, behind one small interface."""
