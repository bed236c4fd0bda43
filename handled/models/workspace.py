"""DATA database, schema ``workspace``: raw rows of imported files, one table per integration,
and the run ledger (what each import or transformation committed in DATA, handled/ledger.py)."""

from peewee import (BigIntegerField, BooleanField, CompositeKey, DoubleField, IntegerField,
                    SmallIntegerField, TextField)
from playhouse.postgres_ext import BinaryJSONField

from handled.db import DataModel, TimestampTzField


class WorkspaceModel(DataModel):
    class Meta:
        schema = "workspace"


class UsZip(WorkspaceModel):
    zip = TextField(primary_key=True)
    lat = DoubleField()
    lng = DoubleField()
    city = TextField()
    state_id = TextField()
    state_name = TextField()
    zcta = BooleanField()
    parent_zcta = TextField(null=True)
    population = IntegerField(null=True)
    density = DoubleField(null=True)
    county_fips = TextField()
    county_name = TextField()
    county_weights = TextField()
    county_names_all = TextField()
    county_fips_all = TextField()
    imprecise = BooleanField()
    military = BooleanField()
    timezone = TextField()

    class Meta:
        table_name = "us_zips"


class GazZcta(WorkspaceModel):
    geoid = TextField(primary_key=True)
    aland = BigIntegerField()
    awater = BigIntegerField()
    aland_sqmi = DoubleField()
    awater_sqmi = DoubleField()
    intptlat = DoubleField()
    intptlong = DoubleField()

    class Meta:
        table_name = "gaz_zcta_national"


class UpsZone(WorkspaceModel):
    origin_zip3 = TextField()
    dest_zip3 = TextField()
    ground = TextField(null=True)
    three_day_select = TextField(null=True)
    second_day_air = TextField(null=True)
    second_day_air_am = TextField(null=True)
    next_day_air_saver = TextField(null=True)
    next_day_air = TextField(null=True)

    class Meta:
        table_name = "ups_zones"
        primary_key = CompositeKey("origin_zip3", "dest_zip3")


class UpsGroundServiceZip5(WorkspaceModel):
    origin_zip = TextField()
    dest_zip = TextField()
    dest_state = TextField()
    transit_days = SmallIntegerField(null=True)

    class Meta:
        table_name = "ups_ground_service_zip5"
        primary_key = CompositeKey("origin_zip", "dest_zip")


class Usps3dBaseService(WorkspaceModel):
    origin_zip3 = TextField()
    dest_zip3 = TextField()
    pri_days = SmallIntegerField(null=True)
    gal_days = SmallIntegerField(null=True)
    mkt_days = SmallIntegerField(null=True)
    per_days = SmallIntegerField(null=True)
    pkg_days = SmallIntegerField(null=True)
    fcm_days = SmallIntegerField(null=True)
    gah_days = SmallIntegerField(null=True)
    pfc_days = SmallIntegerField(null=True)

    class Meta:
        table_name = "usps_3d_base_service"
        primary_key = CompositeKey("origin_zip3", "dest_zip3")


class RunLedgerEntry(WorkspaceModel):
    """One committed DATA transaction of a run (written by handled/ledger.py, never through this model)."""

    kind = TextField()
    run_id = BigIntegerField()
    run_started_at = TimestampTzField()
    subject = TextField()
    outcome = TextField()
    file_sha256 = TextField(null=True)
    rows_read = BigIntegerField(default=0)
    rows_written = BigIntegerField(default=0)
    rows_rejected = BigIntegerField(default=0)
    rejected_rows = BinaryJSONField(default=list)
    committed_at = TimestampTzField()

    class Meta:
        table_name = "run_ledger"
        primary_key = CompositeKey("kind", "run_id", "run_started_at")
