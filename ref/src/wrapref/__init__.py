"""wrapref: a stdlib-only reference implementation of agentsh's wrap handoff.

A privileged server hands file descriptors to an unprivileged local user over
Unix sockets, guarded by socket ownership, file modes, POSIX ACLs and
SO_PEERCRED.  ``--profile`` selects agentsh's behaviour (gaps included), the
historical and naive variants, or the hardened design (SPEC.md §2-§3).

Modules:

* :mod:`wrapref.profiles` -- the per-profile switches (one per rule H1..H13)
* :mod:`wrapref.wire`     -- SCM_RIGHTS, SO_PEERCRED, metadata, /proc helpers
* :mod:`wrapref.wrapdir`  -- the wrap directory: layout orders, ACLs, validation
* :mod:`wrapref.observe`  -- JSON-lines logs and bounded per-session events
* :mod:`wrapref.server`   -- sessions, wrap-init and the accept loops
* :mod:`wrapref.api`      -- the HTTP/JSON API over Unix and loopback TCP
* :mod:`wrapref.client`   -- the owner's client (``wrapref wrap``)
* :mod:`wrapref.cli`      -- ``wrapref serve`` and ``wrapref wrap``

Threat model: see each module.  This package is stdlib only, on purpose and
for good: it is copied into minimal images that only have python3.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
