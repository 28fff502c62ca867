"""What an operator watches: Prometheus metrics (metrics.py), OpenTelemetry traces (tracing.py)
and structured logs (logs.py), each set up once where a process starts."""
