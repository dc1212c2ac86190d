"""flowerstyle: a Flower App written the way Flower's own examples are, used to test the stack."""
