"""The Slurm compute backend: job steps run as Slurm batch jobs on a real cluster."""

from epic.compute.slurm.backend import SlurmBackend

__all__ = ["SlurmBackend"]
