-- DATA database: raw imported files (workspace) and derived tables (reference).
-- Everything here can be rebuilt from the source archive and the run history.

CREATE SCHEMA IF NOT EXISTS workspace;
CREATE SCHEMA IF NOT EXISTS reference;

-- SimpleMaps US ZIP database (uszips.csv)
CREATE TABLE workspace.us_zips (
    zip              TEXT PRIMARY KEY CHECK (zip ~ '^[0-9]{5}$'),
    lat              DOUBLE PRECISION NOT NULL,
    lng              DOUBLE PRECISION NOT NULL,
    city             TEXT NOT NULL,
    state_id         TEXT NOT NULL,
    state_name       TEXT NOT NULL,
    zcta             BOOLEAN NOT NULL,
    parent_zcta      TEXT,
    population       INTEGER,
    density          DOUBLE PRECISION,
    county_fips      TEXT NOT NULL,
    county_name      TEXT NOT NULL,
    county_weights   TEXT NOT NULL,
    county_names_all TEXT NOT NULL,
    county_fips_all  TEXT NOT NULL,
    imprecise        BOOLEAN NOT NULL,
    military         BOOLEAN NOT NULL,
    timezone         TEXT NOT NULL
);

-- Census Gazetteer ZCTA file (2020_Gaz_zcta_national.txt)
CREATE TABLE workspace.gaz_zcta_national (
    geoid       TEXT PRIMARY KEY CHECK (geoid ~ '^[0-9]{5}$'),
    aland       BIGINT NOT NULL,
    awater      BIGINT NOT NULL,
    aland_sqmi  DOUBLE PRECISION NOT NULL,
    awater_sqmi DOUBLE PRECISION NOT NULL,
    intptlat    DOUBLE PRECISION NOT NULL,
    intptlong   DOUBLE PRECISION NOT NULL
);

-- UPS zone charts (NNN.xls / NNN.xlsx), ranges expanded to one row per ZIP3
CREATE TABLE workspace.ups_zones (
    origin_zip3        TEXT NOT NULL CHECK (origin_zip3 ~ '^[0-9]{3}$'),
    dest_zip3          TEXT NOT NULL CHECK (dest_zip3 ~ '^[0-9]{3}$'),
    ground             TEXT,
    three_day_select   TEXT,
    second_day_air     TEXT,
    second_day_air_am  TEXT,
    next_day_air_saver TEXT,
    next_day_air       TEXT,
    PRIMARY KEY (origin_zip3, dest_zip3)
);

-- UPS ground transit times per origin ZIP5 (NNNNN.csv / NNNNN_Outbound.csv)
CREATE TABLE workspace.ups_ground_service_zip5 (
    origin_zip   TEXT NOT NULL CHECK (origin_zip ~ '^[0-9]{5}$'),
    dest_zip     TEXT NOT NULL CHECK (dest_zip ~ '^[0-9]{5}$'),
    dest_state   TEXT NOT NULL,
    transit_days SMALLINT,
    PRIMARY KEY (origin_zip, dest_zip)
);

-- USPS 3-digit base service standards (3D_Base_Service_Standard_Directory_MMDDYYYY.csv)
CREATE TABLE workspace.usps_3d_base_service (
    origin_zip3 TEXT NOT NULL CHECK (origin_zip3 ~ '^[0-9]{3}$'),
    dest_zip3   TEXT NOT NULL CHECK (dest_zip3 ~ '^[0-9]{3}$'),
    pri_days    SMALLINT,
    gal_days    SMALLINT,
    mkt_days    SMALLINT,
    per_days    SMALLINT,
    pkg_days    SMALLINT,
    fcm_days    SMALLINT,
    gah_days    SMALLINT,
    pfc_days    SMALLINT,
    PRIMARY KEY (origin_zip3, dest_zip3)
);

CREATE TABLE reference.carriers (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE reference.services (
    carrier_code TEXT NOT NULL REFERENCES reference.carriers (code) ON DELETE CASCADE,
    code         TEXT NOT NULL,
    name         TEXT NOT NULL,
    PRIMARY KEY (carrier_code, code)
);

CREATE TABLE reference.zip3_reference (
    zip3             TEXT PRIMARY KEY,
    zip_count        INTEGER,
    total_population BIGINT,
    primary_state    TEXT,
    primary_city     TEXT,
    pop_lat          DOUBLE PRECISION,
    pop_lng          DOUBLE PRECISION,
    land_sqmi        DOUBLE PRECISION,
    water_sqmi       DOUBLE PRECISION,
    geo_lat          DOUBLE PRECISION,
    geo_lng          DOUBLE PRECISION
);

-- ~11.3M rows, rebuilt beside the live table and swapped in; no foreign keys so
-- the swap stays a rename.
CREATE TABLE reference.delivery_matrix (
    origin_zip3    TEXT NOT NULL,
    dest_zip3      TEXT NOT NULL,
    carrier        TEXT NOT NULL,
    service        TEXT NOT NULL,
    transit_days   SMALLINT NOT NULL,
    zone           TEXT,
    delivery_score SMALLINT NOT NULL,
    source         TEXT NOT NULL,
    PRIMARY KEY (origin_zip3, dest_zip3, carrier, service)
);
