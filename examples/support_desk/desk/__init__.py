"""The support desk: a billing agent (see :mod:`desk.agent`)."""
