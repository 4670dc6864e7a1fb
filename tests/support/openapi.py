"""The OpenAPI document's schemas as JSON Schema validators."""

from __future__ import annotations

from typing import Any


def nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema: `type` also allows null."""
    if isinstance(node, dict):
        out = {k: nullable(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("$ref"), str):
            out["$ref"] = out["$ref"].replace("#/components/schemas/",
                                              "#/components/schemas/")
        return out
    if isinstance(node, list):
        return [nullable(v) for v in node]
    return node
