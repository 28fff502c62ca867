"""Tests of the deployment: docker-compose.yml, its one-shot jobs, its secrets and its services."""
