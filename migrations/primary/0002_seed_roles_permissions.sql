-- System roles and permission codes (data, not code). Idempotent.
-- depends: 0001_config_customer_schemas

INSERT INTO config.permissions (code, category, description) VALUES
    ('manage_users',        'accounts',  'Create, edit, disable and delete users; reset passwords; revoke sessions'),
    ('manage_roles',        'accounts',  'Create roles and edit the permission matrix'),
    ('view_audit',          'accounts',  'Read the audit log'),
    ('view_customers',      'customers', 'See organizations and facilities'),
    ('manage_customers',    'customers', 'Create, edit and deactivate organizations and facilities'),
    ('run_imports',         'data',      'Upload carrier and census files'),
    ('run_transformations', 'data',      'Rebuild reference tables'),
    ('download_exports',    'data',      'Download JSON and CSV exports'),
    ('view_system',         'system',    'See health, migrations and metrics')
ON CONFLICT (code) DO NOTHING;

INSERT INTO config.roles (code, name, description, is_system) VALUES
    ('admin',          'Administrator',  'Everything', true),
    ('superuser',      'Superuser',      'Everything but managing roles', true),
    ('warehouse_lead', 'Warehouse lead', 'Customers, imports, transformations and exports', true),
    ('salesperson',    'Salesperson',    'Customers and exports', true)
ON CONFLICT (code) DO NOTHING;

INSERT INTO config.role_permissions (role_id, permission_id)
SELECT r.id, p.id
FROM config.roles r
JOIN config.permissions p ON
    r.code = 'admin'
    OR (r.code = 'superuser' AND p.code <> 'manage_roles')
    OR (r.code = 'warehouse_lead' AND p.code IN ('view_customers', 'run_imports', 'run_transformations', 'download_exports'))
    OR (r.code = 'salesperson' AND p.code IN ('view_customers', 'download_exports'))
ON CONFLICT DO NOTHING;
