#!/bin/sh
# The reference server started through a script the lab copies in: the target file beside
# this one describes it as a server wraplab did not write (files installed, readiness by
# socket, no events), so every verdict comes from what the actors saw.
exec wrapref serve "$@"
