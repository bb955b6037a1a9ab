"""Rules and states of the domain. Plain Python: no I/O, no clock, no database."""
