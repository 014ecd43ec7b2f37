"""Staff work in the admin, in headless Chromium: find a customer, open it, issue an API key."""

import re

import pytest
from django.contrib.auth import get_user_model

from tenants.models import ApiKey, TenantMembership, hash_api_key
from tests.admin.conftest import PASSWORD
from tests.factories import CustomerFactory, TenantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page(monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test itself
    # happen before and after it drives the page, never concurrently.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.set_default_timeout(15_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


@pytest.fixture
def staff_member():
    tenant = TenantFactory(slug="acme", name="Acme Cloud")
    user = get_user_model().objects.create_user("billing-staff", password=PASSWORD, is_staff=True)
    TenantMembership.objects.create(user=user, tenant=tenant)
    return user, tenant


def _log_in(page, base_url: str, username: str):
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def test_staff_finds_a_customer_by_email_and_sees_its_namespace(live_server, page, staff_member):
    _user, tenant = staff_member
    for number in range(3):
        CustomerFactory(tenant=tenant, email=f"someone{number}@example.com")
    customer = CustomerFactory(tenant=tenant, email="ada@lovelace.example", name="Ada Lovelace")
    other = TenantFactory(slug="globex", name="Globex")
    CustomerFactory(tenant=other, email="ada@globex.example")
    namespace = customer.default_namespace.name

    _log_in(page, live_server.url, "billing-staff")
    page.click("#content-main a[href='/admin/customers/customer/']")
    page.fill("#searchbar", "ada@")
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    results = page.locator("#result_list tbody tr")
    assert results.count() == 1  # not the other tenant's Ada
    results.first.locator("a").first.click()
    page.wait_for_load_state()

    assert page.input_value("#id_email") == "ada@lovelace.example"
    assert page.locator(".field-default_namespace .readonly").inner_text().strip() == namespace
    assert namespace in page.locator("#namespaces-group").inner_text()
    # The admin's own assets load (also with DEBUG off): the page is styled, not bare HTML.
    assert page.evaluate("getComputedStyle(document.querySelector('#header')).display") == "flex"


def test_creating_an_api_key_shows_the_clear_key_once(live_server, page, staff_member):
    _user, tenant = staff_member

    _log_in(page, live_server.url, "billing-staff")
    page.goto(f"{live_server.url}/admin/tenants/apikey/add/")
    page.select_option("#id_tenant", label="Acme Cloud")
    page.fill("#id_name", "deploy-bot")
    page.click("input[name=_save]")
    page.wait_for_load_state()
    message = page.locator(".messagelist").inner_text()
    shown = re.findall(r"bk_[A-Za-z0-9_\-]{40,}", message)
    assert len(shown) == 1, message
    page.reload()
    assert shown[0] not in page.content()
    page.click("text=deploy-bot")
    page.wait_for_load_state()
    assert shown[0] not in page.content()

    key = ApiKey.objects.get(name="deploy-bot")
    assert key.tenant == tenant
    assert key.key_hash == hash_api_key(shown[0])
