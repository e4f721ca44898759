"""Core: the trip schema and typed feature specs (one source of truth), settings read from the
environment, and the per-run JSON report. Imports no other package of the library."""
