from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from galfriday_site.settings.logging import build_logging


def test_json_logging_writes_one_json_object_per_line_with_extra_ids() -> None:
    config = build_logging(level="INFO", fmt="json")
    stream = io.StringIO()
    config["handlers"]["stderr"] = {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}
    config["root"]["handlers"] = ["stderr"]
    logging.config.dictConfig(config)
    try:
        logging.getLogger("trading.execution").info("order submitted", extra={"order_id": 42, "decision": "d-1"})
    finally:
        logging.config.dictConfig(build_logging(level="INFO", fmt="console"))
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "order submitted"
    assert record["level"] == "INFO"
    assert record["logger"] == "trading.execution"
    assert (record["order_id"], record["decision"]) == (42, "d-1")
    assert record["ts"]


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        build_logging(level="INFO", fmt="xml")
