"""DATA database, schema ``reference``: seeded carriers/services and derived tables."""

from peewee import (BigIntegerField, CompositeKey, DoubleField, ForeignKeyField, IntegerField,
                    SmallIntegerField, TextField)

from handled.db import DataModel


class ReferenceModel(DataModel):
    class Meta:
        schema = "reference"


class Carrier(ReferenceModel):
    code = TextField(primary_key=True)
    name = TextField()

    class Meta:
        table_name = "carriers"


class Service(ReferenceModel):
    carrier = ForeignKeyField(Carrier, column_name="carrier_code", backref="services",
                              on_delete="CASCADE", field="code")
    code = TextField()
    name = TextField()

    class Meta:
        table_name = "services"
        primary_key = CompositeKey("carrier", "code")


class Zip3Reference(ReferenceModel):
    zip3 = TextField(primary_key=True)
    zip_count = IntegerField(null=True)
    total_population = BigIntegerField(null=True)
    primary_state = TextField(null=True)
    primary_city = TextField(null=True)
    pop_lat = DoubleField(null=True)
    pop_lng = DoubleField(null=True)
    land_sqmi = DoubleField(null=True)
    water_sqmi = DoubleField(null=True)
    geo_lat = DoubleField(null=True)
    geo_lng = DoubleField(null=True)

    class Meta:
        table_name = "zip3_reference"


class DeliveryMatrix(ReferenceModel):
    origin_zip3 = TextField()
    dest_zip3 = TextField()
    carrier = TextField()
    service = TextField()
    transit_days = SmallIntegerField()
    zone = TextField(null=True)
    delivery_score = SmallIntegerField()
    source = TextField()

    class Meta:
        table_name = "delivery_matrix"
        primary_key = CompositeKey("origin_zip3", "dest_zip3", "carrier", "service")


class GroundDays(ReferenceModel):
    """Fewest days per ZIP3 pair of each ground service, built and swapped with delivery_matrix
    (migration 0005, transformations/sql/ground_days.sql); what the zone-matrix exports read."""

    origin_zip3 = TextField()
    dest_zip3 = TextField()
    ups_gnd = SmallIntegerField(null=True)
    usps_gal = SmallIntegerField(null=True)
    usps_gah = SmallIntegerField(null=True)
    usps_pkg = SmallIntegerField(null=True)
    origin_services = SmallIntegerField()
    dest_services = SmallIntegerField()

    class Meta:
        table_name = "ground_days"
        primary_key = CompositeKey("origin_zip3", "dest_zip3")
