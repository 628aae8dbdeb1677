"""The scenarios: one file each (``<slug>.py``), loaded by path by :mod:`wraplab.engine`.

Their file names have hyphens on purpose (the slug is the file name), so they are not
importable as modules; see ``wraplab.engine`` for the format.
"""
