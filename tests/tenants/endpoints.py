"""Every authenticated endpoint, one line each, for the table-driven convention tests
(authentication, tenant isolation). A new endpoint is covered by adding its line here."""

from collections.abc import Callable
from dataclasses import dataclass

from customers.services import namespace_create
from tests.factories import CustomerFactory

# Placeholders in paths, and how the generated OpenAPI document names the same path parameter.
_SCHEMA_PARAMETERS = {"{customer}": "{id}", "{namespace}": "{ns}"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    body: Callable[[dict], dict] | None = None

    def url(self, objects: dict) -> str:
        return self.path.format(**objects)

    @property
    def schema_path(self) -> str:
        path = self.path
        for placeholder, parameter in _SCHEMA_PARAMETERS.items():
            path = path.replace(placeholder, parameter)
        return path

    @property
    def targets_one_object(self) -> bool:
        return "{" in self.path

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


ENDPOINTS = [
    Endpoint("get", "/api/v1/customers"),
    Endpoint("post", "/api/v1/customers", lambda objects: {"email": "new@example.com"}),
    Endpoint("get", "/api/v1/customers/{customer}"),
    Endpoint("put", "/api/v1/customers/{customer}", lambda objects: {"email": "put@example.com"}),
    Endpoint("patch", "/api/v1/customers/{customer}", lambda objects: {"name": "Patched"}),
    Endpoint("post", "/api/v1/customers/{customer}/disable"),
    Endpoint("post", "/api/v1/customers/{customer}/enable"),
    Endpoint("get", "/api/v1/namespaces"),
    Endpoint(
        "post",
        "/api/v1/namespaces",
        lambda objects: {"name": "new-ns", "customer": objects["customer"]},
    ),
    Endpoint("get", "/api/v1/namespaces/{namespace}"),
    Endpoint("patch", "/api/v1/namespaces/{namespace}", lambda objects: {"description": "Team"}),
    Endpoint("delete", "/api/v1/namespaces/{namespace}"),
]

PUBLIC_PATHS = ["/healthz", "/api/v1/schema/", "/api/v1/docs/", "/api/v1/redoc/"]


def make_objects(tenant, *, prefix: str = "") -> dict:
    """A customer of `tenant` and a second (deletable) namespace of it, as path values."""
    customer = CustomerFactory(tenant=tenant, email=f"{prefix}owner@example.com")
    namespace = namespace_create(tenant=tenant, customer=customer, name=f"{prefix}team-a")
    return {"customer": str(customer.pk), "namespace": namespace.name}


def call(client, endpoint: Endpoint, objects: dict, *, query: str = ""):
    url = endpoint.url(objects) + query
    body = endpoint.body(objects) if endpoint.body else None
    return getattr(client, endpoint.method)(url, body, format="json")
