"""API clients from `[[clients]]`: their credentials read from secret files (registered for
masking as they are read). A file may hold several secrets, one per line, for rotation."""

from __future__ import annotations

from pathlib import Path

from runner.configuration.config import ClientConfig, Config
from runner.errors import ConfigError
from security.auth import Client, parse_whsec
from security.masking import register_secret
from security.secretfiles import read_secret_file


def _lines(path: Path, key: str) -> list[str]:
    values = [line.strip() for line in read_secret_file(path, key).splitlines() if line.strip()]
    for value in values:
        register_secret(value)
    return values


def load_client(config: Config, index: int, client: ClientConfig) -> Client:
    where = f"clients[{index}]"
    keys: list[bytes] = []
    if client.secret_file:
        for value in _lines(client.secret_file, f"{where}.secret_file"):
            try:
                keys.append(parse_whsec(value))
            except ValueError as exc:
                raise ConfigError(str(config.path), f"{where}.secret_file", str(exc)) from None
    tokens = _lines(client.token_file, f"{where}.token_file") if client.token_file else []
    return Client(name=client.name, jobs=client.jobs, hmac_keys=tuple(keys), tokens=tuple(tokens))


def load_clients(config: Config) -> tuple[Client, ...]:
    return tuple(load_client(config, i, c) for i, c in enumerate(config.clients))
