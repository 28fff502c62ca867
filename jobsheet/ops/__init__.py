"""Running jobsheet: the local stack, its processes and binaries, the demo, deployment one-shots."""
