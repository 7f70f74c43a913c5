"""The task packages; each follows the contract in docs/ARCHITECTURE.md."""

from common.quiet import quiet_tensorflow

# Before any task module imports TensorFlow: its C++ logger reads the level once.
quiet_tensorflow()
