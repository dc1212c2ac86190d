"""pki: the stack's certificate and key tooling (CA, SuperLink TLS certificate, SuperNode auth keys).

Run as `python -m pki --help`. Generated files land beside this package by default and are
git-ignored; private keys are written 0600.
"""
