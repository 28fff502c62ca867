"""Core: settings, Temporal and S3 connections, money, names, canonical encodings, processes."""
