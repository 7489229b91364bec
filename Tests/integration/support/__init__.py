"""What the integration tests run besides berthd: emulated and real services and C shims.

- `nova_emulator`: the in-process Nova compute API the OpenStack adapter talks to.
- `keystone_fixture`: a real Keystone (subprocesses) and its pytest fixtures.
- `wallclock_shim.c`, `storage_fault_shim.c`: `LD_PRELOAD` shims the tests compile.

Helpers for driving berthd itself live in `berthtest.py`, fixtures in `conftest.py`.
"""
