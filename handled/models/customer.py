"""PRIMARY database, schema ``customer``: client organisations and facilities."""

from peewee import AutoField, BooleanField, CompositeKey, ForeignKeyField, TextField

from handled.db import PrimaryModel, TimestampTzField
from handled.timeutil import utcnow


class CustomerModel(PrimaryModel):
    class Meta:
        schema = "customer"


class Organization(CustomerModel):
    id = AutoField()
    code = TextField(unique=True)
    name = TextField()
    status = TextField(default="active")
    contact_name = TextField(null=True)
    contact_email = TextField(null=True)
    contact_phone = TextField(null=True)
    created_at = TimestampTzField(default=utcnow)
    updated_at = TimestampTzField(default=utcnow)

    class Meta:
        table_name = "organizations"


class Facility(CustomerModel):
    id = AutoField()
    code = TextField(unique=True)
    name = TextField()
    address_line1 = TextField(default="")
    address_line2 = TextField(null=True)
    city = TextField(default="")
    state = TextField(default="")
    zip = TextField()
    timezone = TextField()
    active = BooleanField(default=True)
    created_at = TimestampTzField(default=utcnow)
    updated_at = TimestampTzField(default=utcnow)

    class Meta:
        table_name = "facilities"

    @property
    def zip3(self) -> str:
        """The origin used to look up this facility's delivery coverage."""
        return self.zip[:3]


class FacilityOrganization(CustomerModel):
    facility = ForeignKeyField(Facility, backref="served", on_delete="CASCADE")
    organization = ForeignKeyField(Organization, backref="facilities", on_delete="CASCADE", index=True)

    class Meta:
        table_name = "facility_organizations"
        primary_key = CompositeKey("facility", "organization")
