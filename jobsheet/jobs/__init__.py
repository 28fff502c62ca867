"""The job sheet: the complete record of one job, and its lifecycle's shared models."""
