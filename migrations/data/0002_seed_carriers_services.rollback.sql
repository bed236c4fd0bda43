DELETE FROM reference.services WHERE carrier_code IN ('UPS', 'USPS');
DELETE FROM reference.carriers WHERE code IN ('UPS', 'USPS');
