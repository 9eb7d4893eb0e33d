"""The local backend: every command in its own bubblewrap sandbox on this host.

* ``backend`` -- ``LocalSandboxBackend``: sandboxes' lifecycle, exec and PTY.
* ``host`` -- start-up: root check, sandbox root, cgroups, probe; the uid pool.
* ``live`` -- what this process tracks of a sandbox: handles, activity, expiry.
* ``watchdog`` -- ends expired sandboxes, enforces the disk quota.
* ``runner`` -- one sandbox's metadata -> one invocation (exec, PTY, private).
* ``bwrap`` -- the prlimit + bwrap command line of an invocation (arguments only).
* ``process`` -- starting, killing and reaping an invocation; a sandbox's pids.
* ``launch`` -- bwrap's options and /etc files passed in file descriptors.
* ``seccomp`` -- the syscall filter; ``cgroup`` -- per-sandbox cgroup limits;
  ``quota`` -- disk and inode quota; ``probe`` -- the start-up isolation probe.
* ``exec`` / ``pty`` -- the handles of a running command / terminal.
* ``files`` / ``fileapi`` / ``oserrors`` -- symlink-safe workspace files;
  ``walk`` -- resolving a path in them; ``listing`` -- listings, disk usage.
* ``meta`` -- sandbox metadata on disk; ``private`` -- test runs' snapshots;
  ``presets`` -- the system view, environment and generated /etc;
  ``spec`` -- what this backend cannot honour in a spec.

May import: the standard library, ``modal_app.base``, ``modal_app.paths``,
``modal_app.logged`` and this package (never ``modal_app.modal``).
"""
