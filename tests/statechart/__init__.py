"""Hand-written semantics tests of the statechart core (xstate v5 as the reference)."""
