"""End-to-end tests with the real Prometheus and Alertmanager binaries."""
