"""Tools for tests and the demo: local stand-ins for the services Breakglass talks to."""
