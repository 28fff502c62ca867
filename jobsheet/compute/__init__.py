"""The compute service: operator-defined calculations, contracts and the isolated runner."""
