"""A protocol-level stand-in for Modal's API, for testing the Modal backend's client side.

``ModalStandin`` (``server``) serves the subset of ``modal_proto``'s
``ModalClient`` service our backend calls (``control``) and, per sandbox, a
task command router (``router``), on loopback, for the real modal SDK
(``MODAL_SERVER_URL``).  Each sandbox is a real bubblewrap container built with
the local backend's launcher (``container``), in which an agent (``agent``)
runs the entrypoint and every exec, with real pipes and PTYs (``execs``);
``fs_tools`` plays Modal's in-container filesystem helper.  ``state`` holds
ids, tokens and the fault switches.

It is not Modal: it proves our side of the protocol, not Modal's behaviour
(see /work/notes/modal_standin.md for what still needs a real Modal run).
"""

from tests.modal_standin.server import ModalStandin

__all__ = ["ModalStandin"]
