"""The worker: dispatches jobs, runs their steps on compute backends and stages data."""
