# Augmenting declarations for fabric.py (the optional compiled build: simulator/compiled.py). None yet:
# compiled as it is, the per-join and per-leave bookkeeping (the component search, the slot rows, the
# changed links) runs without the interpreter's dispatch; its numpy calls and their floats are the same.
