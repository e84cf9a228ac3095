"""The sans-IO protocol core: events, encoding, validation, ledger rules and gossip state machines.

Nothing in this package performs I/O, reads a clock or sleeps: every entry point takes the current
time as an argument. That is what lets the simulator drive hundreds of nodes deterministically.
"""
