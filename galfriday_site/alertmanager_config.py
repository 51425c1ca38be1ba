"""`deploy/alertmanager.yml` rendered from the settings, so the outside watchdog reaches the same people as the app's
notifications (NOTIFY_WEBHOOK_URL, NOTIFY_EMAIL_TO with Django's EMAIL_*, NOTIFY_TELEGRAM_*) and its dead man's
switch pings GALFRIDAY_WATCHDOG_URL. `manage.py alertmanager_config` writes the result.

The template is Alertmanager's own configuration with `${NAME}` (a setting, required by the entry it is in) and
`${NAME:-}` (optional) in string values. Rendering:
- a channel entry (one item of a receiver's `*_configs`) whose required settings are empty is dropped: the channel
  is not configured;
- in the `galfriday-<severity>` receivers (the app's channels; not the dead man's switch), a channel is kept only
  when its NOTIFY_<CHANNEL>_SEVERITIES lists that severity (the app's routing), and the webhook is
  `webhook_configs` (Alertmanager's JSON) unless NOTIFY_WEBHOOK_FORMAT is `slack` (then `slack_configs`, an
  incoming-webhook payload);
- list settings are joined with commas (e-mail recipients), `chat_id` becomes an integer and `require_tls` a
  boolean, as Alertmanager wants them.
A configuration in which critical alerts reach no channel is refused (`AlertmanagerConfigError`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

TEMPLATE = Path(settings.BASE_DIR) / "deploy" / "alertmanager.yml"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(:-)?\}")
SEVERITY_RECEIVER = re.compile(r"^galfriday-(?P<severity>[a-z]+)$")
# Which app channel a receiver entry is, for its NOTIFY_<CHANNEL>_SEVERITIES routing.
CHANNEL_OF = {
    "webhook_configs": "WEBHOOK",
    "slack_configs": "WEBHOOK",
    "email_configs": "EMAIL",
    "telegram_configs": "TELEGRAM",
}


class AlertmanagerConfigError(ValueError):
    """The settings make no usable Alertmanager configuration."""


@dataclass
class Rendered:
    config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def as_yaml(self) -> str:
        header = (
            "# Rendered from deploy/alertmanager.yml by `manage.py alertmanager_config`: do not edit, render again.\n"
            "# Holds secrets (tokens, passwords): keep it readable by Alertmanager only.\n"
        )
        return header + yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True, width=120)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _substitute(value: Any, lookup: Callable[[str], str], missing: set[str]) -> Any:
    """`value` with its placeholders filled; names of required placeholders that are empty go to `missing`."""
    if isinstance(value, dict):
        return {k: _coerce(k, _substitute(v, lookup, missing)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, lookup, missing) for v in value]
    if not isinstance(value, str):
        return value

    def fill(match: re.Match[str]) -> str:
        text = lookup(match.group(1))
        if not text and not match.group(2):
            missing.add(match.group(1))
        return text

    return PLACEHOLDER.sub(fill, value)


def _coerce(key: str, value: Any) -> Any:
    if key == "chat_id" and isinstance(value, str) and value:
        try:
            return int(value)
        except ValueError as exc:
            raise AlertmanagerConfigError(f"NOTIFY_TELEGRAM_CHAT_ID must be a number, not {value!r}") from exc
    if key == "require_tls" and isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return value


def render(template: str, values: Mapping[str, Any]) -> Rendered:
    """The Alertmanager configuration of `template` for the settings `values` (name -> value)."""

    def lookup(name: str) -> str:
        if name not in values:
            raise AlertmanagerConfigError(f"the template uses ${{{name}}}, which is not a setting")
        return _text(values[name]).strip()

    config = copy.deepcopy(yaml.safe_load(template))  # anchors expand to copies: each receiver is edited alone
    out = Rendered(config)
    webhook_format = _text(values.get("NOTIFY_WEBHOOK_FORMAT", "json")).strip().lower() or "json"
    for receiver in config.get("receivers") or []:
        severity = SEVERITY_RECEIVER.match(receiver["name"])
        for kind in [k for k in receiver if k.endswith("_configs")]:
            channel = CHANNEL_OF.get(kind)
            kept = []
            for entry in receiver[kind] or []:
                missing: set[str] = set()
                filled = _substitute(entry, lookup, missing)
                if missing:
                    continue  # the channel is not configured
                if severity and channel == "WEBHOOK" and (kind == "slack_configs") != (webhook_format == "slack"):
                    continue  # the app's webhook in its format; other receivers' webhooks are not the app's
                if severity and channel:
                    wanted = {s.strip().lower() for s in values.get(f"NOTIFY_{channel}_SEVERITIES") or []}
                    if severity["severity"] not in wanted:
                        continue
                kept.append(filled)
            if kept:
                receiver[kind] = kept
            else:
                del receiver[kind]
    names = {r["name"]: r for r in config.get("receivers") or []}
    if not any(k.endswith("_configs") for k in names.get("galfriday-critical", {})):
        raise AlertmanagerConfigError(
            "critical alerts would reach nobody: set NOTIFY_WEBHOOK_URL, NOTIFY_EMAIL_TO or NOTIFY_TELEGRAM_BOT_TOKEN"
            " with NOTIFY_TELEGRAM_CHAT_ID (and list critical in its NOTIFY_<CHANNEL>_SEVERITIES)"
        )
    if not any(k.endswith("_configs") for k in names.get("deadmansswitch", {})):
        out.warnings.append(
            "GALFRIDAY_WATCHDOG_URL is empty: the Watchdog alert goes nowhere, so nobody notices when Prometheus or "
            "Alertmanager itself is down"
        )
    return out


def placeholder_names(value: Any) -> set[str]:
    """The settings named in the string values of a parsed template (comments do not count)."""
    if isinstance(value, dict):
        return set().union(*(placeholder_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(placeholder_names(v) for v in value))
    return {m.group(1) for m in PLACEHOLDER.finditer(value)} if isinstance(value, str) else set()


def settings_values(template: str) -> dict[str, Any]:
    """What `render` needs from Django's settings for `template`: every setting it names, and the routing ones."""
    wanted = placeholder_names(yaml.safe_load(template))
    wanted |= {"NOTIFY_WEBHOOK_FORMAT"} | {f"NOTIFY_{c}_SEVERITIES" for c in set(CHANNEL_OF.values())}
    return {name: getattr(settings, name) for name in wanted if hasattr(settings, name)}


def render_from_settings(template_path: Path = TEMPLATE) -> Rendered:
    template = template_path.read_text()
    return render(template, settings_values(template))
