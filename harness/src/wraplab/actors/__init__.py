"""In-lab actor tools: small stdlib-only programs run *inside* a lab as a real user.

Each is run as ``python3 -m wraplab.actors.<tool> ...`` and prints one JSON object on
stdout. They must import nothing outside the standard library (tests/labs checks it):
they are copied into every lab image (into the interpreter's purelib, as the package
``wraplab.actors`` next to a bare ``wraplab/__init__.py``) and into every LocalLab's
private ``lib/`` directory, and run under whatever python3 the lab has (3.9+).

Tools:

``probe``     who am I (uid, gid, groups, CapEff, network interfaces); ``--connect PATH``
              tries a Unix stream connect and reports ``ok`` or the errno name, and the
              other end's SO_PEERCRED (the server's pid/uid/gid as the kernel reports it).
``stat``      lstat + POSIX ACL (decoded from the xattrs) of paths; ``--list`` lists dirs.
``api``       one HTTP request to the server's API (unix:PATH or tcp:HOST:PORT).
``procinfo``  /proc facts of a process: uids, CapEff/CapPrm/CapBnd, threads, fds.
``reap``      signal a process and all its descendants.

The scenario engine adds its attack tools here.
"""
