"""Running scenarios: the compiler, the engine (no I/O), and the server around it."""
