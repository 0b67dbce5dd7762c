"""What never leaves the process: secrets and environment values, removed from every file a run writes.

The rule, applied to the config a stage saves (config.yaml), hands to W&B and puts in BentoML
metadata, and to the command line in provenance.json:

- a key whose name looks like a secret (`*token*`, `*secret*`, `*password*`, `*passwd*`,
  `*api_key*`, `*apikey*`) is redacted wherever it sits;
- a value that came from an environment variable (`${oc.env:...}`, directly or through an
  interpolation of such a key) is redacted unless its key matches `redact.safe_keys`
  (the shipped data roots, cache folder and prediction log are marked safe: they are paths
  the run needs to be reproduced).

A redacted value that came from the environment is written as its interpolation
(`${oc.env:NAME}`), so the saved config still re-runs where the variable is set; any other
is written as `<redacted>`.

- a password inside a URL (`postgresql://user:password@host/db`, in any value, a safe key's
  too) is removed, leaving `postgresql://user@host/db`: the URL still names the database, and
  libpq takes the password from PGPASSWORD or ~/.pgpass where the run is repeated.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

REDACTED = "<redacted>"
SECRET_NAMES = ("*token*", "*secret*", "*password*", "*passwd*", "*api_key*", "*apikey*")
_INTERPOLATION = re.compile(r"\$\{([^${}:]+)\}")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@")


def without_url_password(text: str) -> str:
    """`scheme://user:password@host` -> `scheme://user@host`, wherever a URL sits in the text."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}@", text)


def is_secret_name(key: str) -> bool:
    name = str(key).lower().rpartition(".")[2]
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_NAMES)


def environment_keys(raw: Any) -> dict[str, str]:
    """{dotted key: the env interpolation it came from} for every value of an unresolved config taken from
    the environment, following plain interpolations (`a: ${b}` where b is an env value)."""
    strings: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str) and "${" in node:
            strings[path] = node

    walk(raw, "")
    found = {k: _env_form(v) for k, v in strings.items() if "oc.env:" in v}
    changed = True
    while changed:  # follow ${other.key} chains to an env value
        changed = False
        for key, text in strings.items():
            if key in found:
                continue
            for ref in _INTERPOLATION.findall(text):
                if ref in found:
                    found[key] = found[ref]
                    changed = True
                    break
    return found


def redact(resolved: Any, env: dict[str, str], safe_keys: list[str] = ()) -> Any:
    """A copy of `resolved` with secret-named keys and unsafe environment values redacted."""

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                key = f"{path}.{k}" if path else str(k)
                if is_secret_name(k) and v is not None and not isinstance(v, (dict, list)):
                    out[k] = env.get(key, REDACTED)
                else:
                    out[k] = walk(v, key)
            return out
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if path in env and not any(fnmatch.fnmatchcase(path, p) for p in safe_keys):
            return env[path]
        return without_url_password(node) if isinstance(node, str) else node

    return walk(resolved, "")


def hidden_values(resolved: Any, public: Any) -> set[str]:
    """The text of every value `redact` removed (what must not appear anywhere else either)."""
    out: set[str] = set()
    if isinstance(resolved, dict) and isinstance(public, dict):
        for k, v in resolved.items():
            out |= hidden_values(v, public.get(k))
    elif isinstance(resolved, list) and isinstance(public, list):
        for a, b in zip(resolved, public):
            out |= hidden_values(a, b)
    elif resolved != public and resolved is not None:
        out.add(str(resolved))
    return out


def redact_argv(argv: list[str], hidden: set[str]) -> list[str]:
    """The command line with every `key=value` whose key is secret-named, or whose value holds a hidden
    value (the shell may have expanded an environment variable into it), written `key=<redacted>`."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and (is_secret_name(key.lstrip("+~")) or any(len(h) >= 3 and h in value for h in hidden)):
            out.append(f"{key}={REDACTED}")
        else:
            out.append(arg)
    return out


def _env_form(text: str) -> str:
    """`${oc.env:NAME,default}` -> `${oc.env:NAME}`: the default may itself be what is being hidden."""
    match = re.search(r"oc\.env:([^,}]+)", text)
    return f"${{oc.env:{match.group(1).strip()}}}" if match else REDACTED
