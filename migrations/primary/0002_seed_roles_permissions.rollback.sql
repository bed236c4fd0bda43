DELETE FROM config.role_permissions
WHERE role_id IN (SELECT id FROM config.roles WHERE is_system);
DELETE FROM config.roles WHERE is_system;
DELETE FROM config.permissions
WHERE code IN ('manage_users', 'manage_roles', 'view_audit', 'view_customers', 'manage_customers',
               'run_imports', 'run_transformations', 'download_exports', 'view_system');
