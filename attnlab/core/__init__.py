"""Pure functions shared by more than one paper: attention forward passes,
PRNG streams and small linear-algebra helpers. No I/O, no flags, no state."""
