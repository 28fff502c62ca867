"""The one-shot jobs docker-compose.yml runs before the services start (see docs/deployment.md)."""
