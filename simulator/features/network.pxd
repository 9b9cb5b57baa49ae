# Augmenting declarations for network.py (the optional compiled build: simulator/compiled.py). None yet:
# compiled as it is, the engine's per-job hooks (on_launch, on_release) and the re-share's rescheduling
# run without the interpreter's dispatch.
