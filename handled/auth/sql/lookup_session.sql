-- One statement per cache miss: check the session (absolute and idle expiry),
-- touch last_seen_at, and load the user with the union of their roles' permissions.
-- A session started before the user's password last changed is refused.
WITH touched AS (
    UPDATE config.sessions s
       SET last_seen_at = now()
     WHERE s.id = %(token_hash)s
       AND s.expires_at > now()
       AND s.last_seen_at > now() - make_interval(secs => %(idle_seconds)s)
    RETURNING s.user_id, s.expires_at, s.created_at
)
SELECT u.id, u.email, u.name, u.must_change_password,
       extract(epoch FROM t.expires_at)::float8 AS expires_at,
       coalesce(array_agg(DISTINCT p.code) FILTER (WHERE p.code IS NOT NULL), '{}') AS permissions
  FROM touched t
  JOIN config.users u ON u.id = t.user_id AND NOT u.disabled AND t.created_at >= u.password_changed_at
  LEFT JOIN config.user_roles ur ON ur.user_id = u.id
  LEFT JOIN config.role_permissions rp ON rp.role_id = ur.role_id
  LEFT JOIN config.permissions p ON p.id = rp.permission_id
 GROUP BY u.id, t.expires_at
