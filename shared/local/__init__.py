"""Local development helpers (emulators run as subprocesses); used by the test fixtures and the
``zts demo`` command, never by the deployed Functions app."""
