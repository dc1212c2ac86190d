"""fjs: the stack's operator commands (local federation, CLI connection, offline data, ...).

Not part of the Flower App: `flwr run` ships only apps/jaxfl.
"""
