"""The languages a question can be answered in (the domain's ``Language`` enum).

The rest of the app imports it from here; what is stored
(``QuestionLanguage.language``, ``InterviewSession.language``,
``TestRun.language``) is its ``value``.

It is *defined* in ``modal_app.base``, the sandbox runtime's contract, and
re-exported here.  Why: the runtime needs it (its presets, images and test
harness are per language) and ``modal_app`` imports nothing of the project's,
while ``modal_app.base`` imports only the standard library, so models may
depend on it without pulling in a backend.  One enum, one definition; the
alternative, plain string keys in the runtime, would have to repeat the list.
"""

from modal_app.base import Language

__all__ = ["Language"]
