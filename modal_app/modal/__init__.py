"""The Modal backend: sandboxes on Modal, their workspaces on Modal Volumes.

* ``backend`` -- ``ModalSandboxBackend``, the contract on the SDK.
* ``spec`` -- a spec -> ``modal.Sandbox.create`` arguments, names and tags.
* ``control`` -- Apps, creating and listing sandboxes, deleting volumes.
* ``images`` -- the language images and ``ImageSpec`` images.
* ``refs`` -- attached sandboxes: cache, status, helper commands, network.
* ``commands`` -- starting commands and terminals, tracking them until they exit.
* ``process`` -- exec and PTY handles; ``shell`` -- the in-sandbox sh snippets.
* ``files`` -- files through the live sandbox or, once ended, its volume.
* ``private`` -- the best-effort private exec of test runs.
* ``errors`` -- SDK exceptions -> ``modal_app.base`` errors.

May import: the standard library, the ``modal`` SDK (``import modal`` is the
SDK: imports are absolute, this package is ``modal_app.modal``),
``modal_app.base``, ``modal_app.paths``, ``modal_app.logged`` and this package
(never ``modal_app.local``).
"""
