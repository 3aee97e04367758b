"""What the worker sees of a Slurm cluster: its controller's health, partitions and nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

from epic.compute.slurm.commands import (
    CommandRunner,
    Node,
    Partition,
    SlurmError,
    SlurmUnavailable,
    nodes,
    partitions,
    ping,
    run_command,
)


@dataclass
class ClusterView:
    """The answers of the Slurm controller, or why there were none."""

    health: str
    healthy: bool
    partitions: list[Partition] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)


def look_at_cluster(run: CommandRunner = run_command) -> ClusterView:
    """Ask the controller for its health, partitions and nodes."""
    try:
        health = ping(run)
        view = ClusterView(health, healthy="UP" in health and "DOWN" not in health)
        view.partitions = partitions(run)
        view.nodes = nodes(run)
    except (SlurmUnavailable, SlurmError) as error:
        return ClusterView(f"not answering: {error}", healthy=False)
    return view


def describe(view: ClusterView, queue_partitions: dict[str, str]) -> list[str]:
    """Lines describing a cluster view, and which queue feeds which partition."""
    lines = [f"  health: {view.health}"]
    if view.partitions:
        lines.append("  partitions:")
        lines += [f"    {_partition_line(partition)}" for partition in view.partitions]
    if view.nodes:
        lines.append("  nodes:")
        lines += [
            f"    {node.name}: {node.state}, {node.cpus} CPUs, {node.memory_mb} MB, "
            f"partitions {node.partitions}"
            for node in view.nodes
        ]
    lines.append("  queues:")
    known = {partition.name for partition in view.partitions}
    for code, partition in sorted(queue_partitions.items()):
        missing = "" if not view.healthy or partition in known else " (no such partition!)"
        lines.append(f"    {code} -> partition {partition or '(default)'}{missing}")
    return lines


def _partition_line(partition: Partition) -> str:
    """One partition, as an operator reads it."""
    limit = partition.time_limit_minutes
    return (
        f"{partition.name}: {'up' if partition.available else 'down'}, "
        f"{partition.nodes} nodes of {partition.cpus_per_node} CPUs "
        f"({partition.sockets}x{partition.cores_per_socket}x{partition.threads_per_core}), "
        f"{partition.memory_mb} MB, time limit "
        f"{'none' if limit is None else f'{limit} min'}"
    )
