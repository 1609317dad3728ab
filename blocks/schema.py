"""What every block type of chatops shares: its JSON schema, made once per class."""

import copy
from typing import Any, ClassVar


class SchemaOnce:
    """Mixed in before ``Block``: the block's JSON schema is made once and then copied.

    Prefect's ``Block.save`` asks the class for its whole JSON schema once per field, to find its
    secrets: a ``chatops config apply`` of the example file (7 blocks) made 481 of them and spent
    1.5 s of CPU in the CLI's process, 0.75 s with this (cProfile and /proc, against the tests'
    Prefect server). A class's schema never changes while it runs; callers get a copy, as they
    may change what they get.
    """

    _schemas: ClassVar[dict[tuple[Any, ...], dict[str, Any]]] = {}

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in SchemaOnce._schemas:
            SchemaOnce._schemas[key] = super().model_json_schema(*args, **kwargs)  # type: ignore[misc]
        return copy.deepcopy(SchemaOnce._schemas[key])
