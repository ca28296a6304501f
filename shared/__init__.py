"""Code both the watcher and the service replicas rely on: messages, keys, settings, telemetry."""

__version__ = "0.1.0"
