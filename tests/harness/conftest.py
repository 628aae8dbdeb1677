"""Harness tests without a lab (CLI, reports, CI files), and a few small real runs in the
local lab where a report must come from a real cell (gated: ``requires_root`` skips with the
reason on a developer's machine and *fails* when ``CI`` is set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wraplab import report


@pytest.fixture(scope="session")
def report_schema() -> dict:
    return json.loads((report.SCHEMAS / "report-v1.schema.json").read_text())


@pytest.fixture
def check_report(report_schema):
    """``check_report(data_or_path)``: validate a JSON report against the v1 schema."""
    import jsonschema

    def check(data) -> dict:
        if isinstance(data, (str, Path)):
            data = json.loads(Path(data).read_text())
        jsonschema.Draft202012Validator.check_schema(report_schema)
        jsonschema.validate(data, report_schema, cls=jsonschema.Draft202012Validator)
        return data

    return check
