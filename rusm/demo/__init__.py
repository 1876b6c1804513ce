"""Workloads that ``rusm demo`` runs."""
