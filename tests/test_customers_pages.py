"""Organizations and facilities: create, edit, deactivate, validation, links."""

from __future__ import annotations

from html import unescape

from handled.models import Facility, FacilityOrganization, Organization

FACILITY = {"code": "wh-east", "name": "East warehouse", "address_line1": "1 Dock Rd", "city": "Newark",
            "state": "nj", "zip": "07001", "timezone": "America/New_York"}


def org_id(app, code):
    with app.app_context():
        return Organization.get(Organization.code == code).id


def test_create_edit_and_deactivate_an_organization(app, login_client):
    client = login_client(permissions=["view_customers", "manage_customers"])
    assert client.post("/customers/organizations/new", data={"code": "acme", "name": "Acme Corp",
                                                             "contact_email": "ops@acme.test"}).status_code == 302
    oid = org_id(app, "ACME")
    with app.app_context():
        assert Organization.get_by_id(oid).contact_email == "ops@acme.test"
    client.post(f"/customers/organizations/{oid}", data={"code": "ACME", "name": "Acme Corporation",
                                                         "contact_email": "billing@acme.test"})
    with app.app_context():
        edited = Organization.get_by_id(oid)
        assert (edited.name, edited.contact_email) == ("Acme Corporation", "billing@acme.test")
    page = client.get("/customers/organizations").get_data(as_text=True)
    assert "Acme Corporation" in page and "billing@acme.test" in page and "ops@acme.test" not in page
    client.post(f"/customers/organizations/{oid}/active", data={"active": "false"})
    with app.app_context():
        assert Organization.get_by_id(oid).status == "inactive"


def test_organization_codes_are_unique_and_validated(app, login_client):
    client = login_client(permissions=["view_customers", "manage_customers"])
    client.post("/customers/organizations/new", data={"code": "ACME", "name": "Acme"})
    dup = client.post("/customers/organizations/new", data={"code": "acme", "name": "Other"})
    assert dup.status_code == 400 and "already uses the code ACME" in dup.get_data(as_text=True)
    bad = client.post("/customers/organizations/new", data={"code": "no spaces!", "name": "X"})
    assert "A code is 1-32 letters" in bad.get_data(as_text=True)
    mail = client.post("/customers/organizations/new", data={"code": "B", "name": "B", "contact_email": "nope"})
    assert mail.status_code == 400 and "is not an email address; write it as name@example.com" in mail.get_data(as_text=True)
    with app.app_context():
        assert Organization.get_or_none(Organization.code == "B") is None   # refused, nothing written


def test_facility_validation_zip_timezone_and_unique_code(app, login_client):
    client = login_client(permissions=["view_customers", "manage_customers"])
    for field, value, message in [("zip", "7001", "must be exactly 5 digits"), ("zip", "07001-1234", "must be exactly 5 digits"),
                                  ("zip", "00000", "ZIP 00000 is not a ZIP code"),
                                  ("timezone", "Mars/Olympus", "is not a timezone; choose one from the list"),
                                  ("state", "New Jersey", "is not a USPS state or territory code"),
                                  ("state", "XX", "is not a USPS state or territory code")]:
        page = client.post("/customers/facilities/new", data={**FACILITY, field: value})
        assert page.status_code == 400 and message in page.get_data(as_text=True), field
    assert client.post("/customers/facilities/new", data=FACILITY).status_code == 302
    dup = client.post("/customers/facilities/new", data=FACILITY)
    assert "already uses the code WH-EAST" in dup.get_data(as_text=True)
    with app.app_context():
        facility = Facility.get(Facility.code == "WH-EAST")
        assert facility.zip == "07001" and facility.zip3 == "070" and facility.state == "NJ"


def test_facility_links_to_the_organizations_it_serves(app, login_client):
    client = login_client(permissions=["view_customers", "manage_customers"])
    for code in ("ACME", "GLOBEX", "INITECH"):
        client.post("/customers/organizations/new", data={"code": code, "name": code.title()})
    ids = [org_id(app, c) for c in ("ACME", "GLOBEX")]
    client.post("/customers/facilities/new", data={**FACILITY, "organizations": [str(i) for i in ids]})
    page = client.get("/customers/facilities").get_data(as_text=True)
    assert "ACME, GLOBEX" in page and "07001 (070)" in page
    with app.app_context():
        fid = Facility.get(Facility.code == "WH-EAST").id
    client.post(f"/customers/facilities/{fid}", data={**FACILITY, "organizations": [str(org_id(app, "INITECH"))]})
    with app.app_context():
        linked = {fo.organization.code for fo in FacilityOrganization.select().where(FacilityOrganization.facility == fid)}
    assert linked == {"INITECH"}
    client.post(f"/customers/facilities/{fid}/active", data={"active": "false"})
    assert "inactive" in client.get("/customers/facilities").get_data(as_text=True)


def test_viewers_see_but_cannot_change(app, login_client):
    manager = login_client(permissions=["view_customers", "manage_customers"])
    manager.post("/customers/organizations/new", data={"code": "ACME", "name": "Acme"})
    viewer = login_client(permissions=["view_customers"])
    page = viewer.get("/customers/organizations").get_data(as_text=True)
    assert "Acme" in page and "Deactivate" not in page
    assert viewer.post("/customers/organizations/new", data={"code": "X", "name": "X"}).status_code == 403
    assert viewer.post(f"/customers/organizations/{org_id(app, 'ACME')}/active", data={"active": "false"}).status_code == 403


def test_every_bad_field_is_shown_next_to_it_at_once(app, login_client):
    client = login_client(permissions=["view_customers", "manage_customers"])
    page = client.post("/customers/facilities/new", data={**FACILITY, "code": "no spaces!", "zip": "00000",
                                                          "state": "ZZ", "timezone": ""})
    html = page.get_data(as_text=True)
    assert page.status_code == 400
    assert "Some fields need correcting; see the notes next to them." in html
    for field, sentence in [("code", "A code is 1-32 letters"), ("zip", "ZIP 00000 is not a ZIP code"),
                            ("state", "is not a USPS state or territory code"),
                            ("timezone", "Timezone is required; choose one from the list.")]:
        assert f'<span class="field-error" id="{field}-error">' in html, field
        error = html.split(f'id="{field}-error">', 1)[1].split("</span>", 1)[0]
        assert sentence in error, (field, error)
    assert 'name="name" value="East warehouse"' in html          # what was typed stays
    assert 'aria-describedby="zip-error"' in html
    with app.app_context():
        assert Facility.select().count() == 0


def test_the_facility_form_offers_usps_states_and_a_timezone_list(app, login_client):
    client = login_client(permissions=["view_customers", "manage_customers"])
    html = client.get("/customers/facilities/new").get_data(as_text=True)
    state_select = html.split('<select name="state"', 1)[1].split("</select>", 1)[0]
    assert '<option value="NJ">New Jersey (NJ)</option>' in state_select
    assert '<option value="PR">Puerto Rico (PR)</option>' in state_select
    assert state_select.count("<option") == 1 + 59          # "(none)" and the USPS codes
    zone_select = html.split('<select name="timezone"', 1)[1].split("</select>", 1)[0]
    assert '<option value="America/New_York" selected>' in zone_select
    assert zone_select.index("America/Chicago") < zone_select.index("Africa/Abidjan")   # US zones first


def _zone_options(html: str) -> list[str]:
    select = html.split('<select name="timezone"', 1)[1].split("</select>", 1)[0]
    return [part.split('"', 1)[0] for part in select.split('<option value="')[1:]]


def test_the_timezone_list_offers_canonical_zones_only(app, login_client):
    client = login_client(permissions=["view_customers", "manage_customers"])
    zones = _zone_options(client.get("/customers/facilities/new").get_data(as_text=True))
    for current in ("America/New_York", "Asia/Kolkata", "Europe/London", "Europe/Amsterdam", "Pacific/Pago_Pago",
                    "America/Indiana/Indianapolis"):
        assert current in zones, current
    for alias in ("US/Eastern", "Asia/Calcutta", "GB", "EST5EDT", "Etc/GMT+5", "UTC", "Factory", "localtime",
                  "Canada/Pacific", "America/Buenos_Aires", "Asia/Saigon"):
        assert alias not in zones, alias
    assert all("/" in zone for zone in zones) and len(zones) == len(set(zones)) and len(zones) < 460, len(zones)
    # an old alias typed in by hand is refused with its reason
    page = client.post("/customers/facilities/new", data={**FACILITY, "timezone": "US/Eastern"})
    assert page.status_code == 400 and "'US/Eastern' is an old alias of a timezone" in unescape(page.get_data(as_text=True))


def test_a_facility_that_holds_an_old_zone_alias_keeps_it_until_changed(app, login_client):
    client = login_client(permissions=["view_customers", "manage_customers"])
    assert client.post("/customers/facilities/new", data=FACILITY).status_code == 302
    with app.app_context():   # a row saved before the list was trimmed
        Facility.update(timezone="US/Eastern").where(Facility.code == "WH-EAST").execute()
        fid = Facility.get(Facility.code == "WH-EAST").id
    form = client.get(f"/customers/facilities/{fid}").get_data(as_text=True)
    assert '<option value="US/Eastern" selected>US/Eastern (not in the list)</option>' in form
    assert client.post(f"/customers/facilities/{fid}", data={**FACILITY, "timezone": "US/Eastern",
                                                           "name": "East dock"}).status_code == 302
    with app.app_context():
        assert (Facility.get_by_id(fid).name, Facility.get_by_id(fid).timezone) == ("East dock", "US/Eastern")
    # another alias is not accepted for it; the current name is
    assert client.post(f"/customers/facilities/{fid}", data={**FACILITY, "timezone": "US/Central"}).status_code == 400
    assert client.post(f"/customers/facilities/{fid}", data={**FACILITY, "timezone": "America/Chicago"}).status_code == 302


def test_facilities_filter_by_organization_state_and_status(app, login_client):
    client = login_client(permissions=["view_customers", "manage_customers"])
    for code in ("ACME", "GLOBEX"):
        client.post("/customers/organizations/new", data={"code": code, "name": code.title()})
    acme, globex = org_id(app, "ACME"), org_id(app, "GLOBEX")
    for code, state, zip_code, orgs in [("NJ-1", "NJ", "07001", [acme]), ("TX-1", "TX", "75001", [acme, globex]),
                                        ("TX-2", "TX", "75002", [globex])]:
        assert client.post("/customers/facilities/new", data={**FACILITY, "code": code, "state": state, "zip": zip_code,
                                                              "organizations": [str(i) for i in orgs]}).status_code == 302
    with app.app_context():
        client.post(f"/customers/facilities/{Facility.get(Facility.code == 'TX-2').id}/active", data={"active": "false"})

    def listed(query):
        html = client.get(f"/customers/facilities?{query}").get_data(as_text=True)
        return [code for code in ("NJ-1", "TX-1", "TX-2") if f"<code>{code}</code>" in html]

    assert listed("") == ["NJ-1", "TX-1", "TX-2"]
    assert listed(f"organization={acme}") == ["NJ-1", "TX-1"]
    assert listed("state=TX") == ["TX-1", "TX-2"]
    assert listed(f"organization={globex}&state=tx&status=active") == ["TX-1"]
    assert listed("status=inactive") == ["TX-2"]
    assert "No facility matches these filters." in client.get("/customers/facilities?state=AK").get_data(as_text=True)
    assert listed("state=nonsense&organization=abc") == ["NJ-1", "TX-1", "TX-2"]   # unknown values filter nothing
