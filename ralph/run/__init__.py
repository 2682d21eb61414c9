"""A run: the runner that sets it up, the loop, one iteration's agent, guards, the
completion gate and promise, resume, signals, task lists, requests from elsewhere, and
hardening campaigns (several runs in sequence)."""
