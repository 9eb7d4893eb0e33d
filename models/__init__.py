"""Tortoise models, one domain per file. No I/O beyond the ORM.

``MODEL_MODULES`` is what the ORM registers under the app label ``models``;
migrations live in ``models.migrations`` and are committed.
"""

MODEL_MODULES = [
    "models.account",
    "models.token",
    "models.question",
    "models.session",
    "models.event",
    "models.sandbox",
    "models.file",
    "models.terminal",
    "models.testrun",
    "models.claude",
    "models.report",
    "models.webhook",
    "models.greenhouse",
    "models.scorecard",
    "models.replica",
]
APP_LABEL = "models"
MIGRATIONS_MODULE = "models.migrations"
