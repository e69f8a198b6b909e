"""In-process HTTPS fakes of external services, for tests and benchmarks."""
