-- Carriers and their services. Idempotent.
-- depends: 0001_workspace_reference_schemas

INSERT INTO reference.carriers (code, name) VALUES
    ('UPS', 'United Parcel Service'),
    ('USPS', 'United States Postal Service')
ON CONFLICT (code) DO NOTHING;

INSERT INTO reference.services (carrier_code, code, name) VALUES
    ('UPS', 'GND', 'Ground'),
    ('UPS', '3DS', '3 Day Select'),
    ('UPS', '2DA', '2nd Day Air'),
    ('UPS', '2AM', '2nd Day Air A.M.'),
    ('UPS', 'NDS', 'Next Day Air Saver'),
    ('UPS', 'NDA', 'Next Day Air'),
    ('USPS', 'PRI', 'Priority Mail'),
    ('USPS', 'GAL', 'Ground Advantage (GAL standard)'),
    ('USPS', 'MKT', 'Marketing Mail'),
    ('USPS', 'PER', 'Periodicals'),
    ('USPS', 'PKG', 'Package Services'),
    ('USPS', 'FCM', 'First-Class Mail'),
    ('USPS', 'GAH', 'Ground Advantage (GAH standard)'),
    ('USPS', 'PFC', 'PFC standard')
ON CONFLICT (carrier_code, code) DO NOTHING;
