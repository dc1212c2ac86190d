"""jaxfl: the Flower App — the seed's LeNet-style JAX/Flax CNN trained with FedAvg on MNIST.

This package is the only code in the FAB that `flwr run` ships to the federation.
"""
