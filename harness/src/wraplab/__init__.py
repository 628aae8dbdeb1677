"""wraplab: a security test harness for the wrap handoff (see SPEC.md and docs/design.md).

This top-level module stays stdlib-only and import-free: the in-lab actor tools
(:mod:`wraplab.actors`) are copied into every lab together with this file.
"""

__version__ = "0.1.0"
