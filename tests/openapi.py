"""Check API answers against the OpenAPI document the project generates (drf-spectacular), so the
published schema cannot drift from what the endpoints really send.

    assert_matches_schema(response, "get", "/api/v1/customers/{id}")
"""

import functools
import json

import jsonschema
from drf_spectacular.generators import SchemaGenerator

_REF_PREFIX = "#/components/schemas/"


@functools.cache
def openapi_document() -> dict:
    """The document `GET /api/v1/schema/` serves, built once per test session."""
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True)))


def _resolve(node, components: dict, seen: tuple[str, ...] = ()):
    """Inline `$ref`s and turn OpenAPI 3.0's `nullable` into JSON Schema, recursively."""
    if isinstance(node, list):
        return [_resolve(item, components, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix(_REF_PREFIX)
        if name in seen:
            raise AssertionError(f"Recursive schema {name} is not supported by this helper")
        return _resolve(components[name], components, (*seen, name))
    resolved = {key: _resolve(value, components, seen) for key, value in node.items()}
    if resolved.pop("nullable", False):
        resolved = {"anyOf": [resolved, {"type": "null"}]}
    return resolved


def response_schema(method: str, path_template: str, status_code: int) -> dict | None:
    """The resolved JSON schema of one documented answer; None when it has no body (204)."""
    document = openapi_document()
    paths = document["paths"]
    assert path_template in paths, f"{path_template} is not in the schema; it has {sorted(paths)}"
    operation = paths[path_template].get(method.lower())
    assert operation is not None, f"{method.upper()} {path_template} is not documented"
    documented = operation["responses"]
    assert str(status_code) in documented, (
        f"{method.upper()} {path_template} answered {status_code}, which the schema does not "
        f"document (it documents {sorted(documented)})"
    )
    content = documented[str(status_code)].get("content")
    if not content:
        return None
    assert "application/json" in content, f"{status_code} is not documented as JSON: {content}"
    components = document.get("components", {}).get("schemas", {})
    return _resolve(content["application/json"]["schema"], components)


def assert_matches_schema(response, method: str, path_template: str) -> None:
    """Fail unless the response's status is documented for the operation and its JSON body
    validates against that status's schema (with unknown properties refused)."""
    schema = response_schema(method, path_template, response.status_code)
    if schema is None:
        assert not response.content, (
            f"{response.status_code} is documented without a body, but the answer has one: "
            f"{response.content[:200]!r}"
        )
        return
    body = json.loads(response.content)
    validator = jsonschema.Draft202012Validator(_closed(schema))
    problems = sorted(validator.iter_errors(body), key=lambda error: list(error.path))
    assert not problems, (
        f"{method.upper()} {path_template} {response.status_code} does not match the schema:\n"
        + "\n".join(f"  at {list(p.absolute_path)}: {p.message}" for p in problems[:10])
    )


def _closed(schema):
    """Refuse properties the schema does not name: an undocumented field is drift too."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if (
        closed.get("type") == "object"
        and "properties" in closed
        and "additionalProperties" not in closed
    ):
        closed["additionalProperties"] = False
    return closed


def assert_error_body(response, status_code: int, *, errors: bool | None = None) -> dict:
    """The one error shape of API.md (Conventions, Errors), with `status_code`; returns the body.
    `errors=True` requires the field map of a validation error, `errors=False` forbids it."""
    assert response.status_code == status_code, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert body["statusCode"] == status_code
    assert isinstance(body["message"], list) and body["message"], body
    assert all(isinstance(message, str) and message for message in body["message"]), body
    assert isinstance(body["error"], str) and body["error"], body
    assert body["internalError"] == {
        "statusCode": status_code,
        "message": body["message"],
        "error": body["error"],
    }
    if errors is True:
        assert isinstance(body.get("errors"), dict) and body["errors"], body
        for field, messages in body["errors"].items():
            assert isinstance(field, str) and field
            assert isinstance(messages, list) and all(isinstance(m, str) for m in messages)
    elif errors is False:
        assert "errors" not in body, body
    text = response.content.decode()
    for leak in ("Traceback", 'File "', "django.db", "IntegrityError", "SELECT ", "bk_"):
        assert leak not in text, f"{leak!r} leaked into an error body: {text[:500]}"
    return body
