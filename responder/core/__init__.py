"""The pure decision core: alert models, policies, decisions and plans.

Nothing in this package performs I/O, reads a clock or imports asyncio; every function that depends on time
takes ``now`` as an argument. import-linter enforces this (see pyproject.toml).
"""
