"""The running system: the Docker engine, images, containers, health checks, the reaper."""
