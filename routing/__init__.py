"""The mesh graph (networkx) built from signed link state, and route computation."""
