"""owndep: softmax regression on MNIST in NumPy, with one dependency the stack's images lack (tabulate)."""
