"""ftrollout-dev: the embedded local control plane, the kwok pod simulator and the demo.

Development tooling only: neither the operator image nor the kubectl plugin installs it.
"""
